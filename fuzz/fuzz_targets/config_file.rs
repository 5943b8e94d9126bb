//! The daemon's configuration file (`/etc/pfnwatch/pfnwatch.toml`), as
//! `pfnwatch run` and SIGHUP read it, then resolved into the settings the
//! daemon runs with and reloaded over the defaults.
//!
//! Properties, beyond "never panics": a file is accepted, or refused with
//! an error naming the key or a line of the file (1 to its line count),
//! and saying what is wrong; what is accepted resolves to settings within
//! the documented ranges.

#![no_main]

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use pfnwatch::cli::{Cli, Command, RunArgs};
use pfnwatch::commands::run::config::{ConfigError, ConfigFile, MAX_SECONDS};
use pfnwatch::commands::run::settings::Settings;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // `ConfigFile::load` refuses a file that is not UTF-8 before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ConfigFile::parse(text, Path::new("pfnwatch.toml")) {
        Ok(file) => check_settings(&file),
        Err(ConfigError::Invalid {
            line, key, message, ..
        }) => {
            // A line past the last is where the parser found the file ended.
            let lines = text.lines().count() + 1;
            assert!(
                line >= 1 || !key.is_empty(),
                "an error naming neither key nor line: {message:?}"
            );
            assert!(line <= lines, "line {line} of a {lines}-line file");
            assert!(!message.trim().is_empty(), "an error that says nothing");
        }
        Err(e @ ConfigError::Read { .. }) => panic!("parsing text cannot fail to read: {e}"),
    }
});

fn check_settings(file: &ConfigFile) {
    let flags = no_flags();
    let settings = Settings::resolve(file, &flags);
    let secs = 1..=MAX_SECONDS;
    assert!(secs.contains(&settings.interval.as_secs()), "{settings:?}");
    assert!(
        secs.contains(&settings.dedup_window.as_secs()),
        "{settings:?}"
    );
    let kib = settings.ringbuf_kib;
    assert!(
        kib.is_power_of_two() && (4..=1024 * 1024).contains(&kib),
        "{settings:?}"
    );
    // A SIGHUP from the defaults to this file, and the summary logged.
    let defaults = Settings::resolve(&ConfigFile::default(), &flags);
    let (reloaded, _) = defaults.reload(&settings, &defaults.rules);
    let _ = reloaded.summary();
}

/// `pfnwatch run` with no flags: the file alone decides.
fn no_flags() -> RunArgs {
    match Cli::try_parse_from(["pfnwatch", "run"]).map(|cli| cli.command) {
        Ok(Command::Run(args)) => args,
        other => panic!("`pfnwatch run` does not parse: {other:?}"),
    }
}
