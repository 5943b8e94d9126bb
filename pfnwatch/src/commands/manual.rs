//! Shell completions and man pages, generated from the clap definitions in
//! cli.rs, so they cannot fall behind the options.

use crate::cli::Cli;
use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut impl Write) -> Result<()> {
    let mut cmd = Cli::command();
    // clap_complete panics when its writer fails; a Vec cannot.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "pfnwatch", &mut script);
    write_all(out, &script).context("writing the completion script")
}

/// Writes `bytes`; a reader that went away (`| head`) is no error.
fn write_all(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The command whose page `name` asks for: pfnwatch itself, or a subcommand.
fn command(name: Option<&str>) -> Result<clap::Command> {
    let mut cmd = Cli::command();
    // Gives subcommands their display names ("pfnwatch-trace").
    cmd.build();
    match name {
        None => Ok(cmd.after_long_help(rules_text())),
        Some(name) => match cmd.find_subcommand(name) {
            Some(sub) => Ok(sub.clone()),
            None => {
                let known: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
                bail!(
                    "no man page for {name:?}: pfnwatch has {}",
                    known.join(", ")
                )
            }
        },
    }
}

/// The rule table as pfnwatch(1) closes with it: what each rule means and
/// the kernel code it was derived from, per kernel.
fn rules_text() -> String {
    let mut text = String::from("RULES\n");
    for rule in crate::rules::RULES {
        text.push_str(&format!(
            "\n{} {} ({})\n{}\nSources: {}\n",
            rule.id, rule.name, rule.severity, rule.explanation, rule.sources
        ));
    }
    text
}

/// pfnwatch.1, or `pfnwatch-<name>.1`, in roff.
pub fn page(name: Option<&str>, out: &mut impl Write) -> Result<()> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(command(name)?)
        .render(&mut roff)
        .context("rendering the man page")?;
    write_all(out, &roff).context("writing the man page")
}

/// Writes pfnwatch.1 and a page per subcommand into `dir`; returns them.
pub fn write_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let root = command(None)?;
    let mut written = Vec::new();
    // `help` is clap's, and pfnwatch(1) already says what it does.
    let subcommands = root
        .get_subcommands()
        .filter(|c| c.get_name() != "help" && !c.is_hide_set());
    for cmd in std::iter::once(root.clone()).chain(subcommands.cloned()) {
        let man = clap_mangen::Man::new(cmd);
        let path = man
            .generate_to(dir)
            .with_context(|| format!("writing a man page into {}", dir.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn completions_know_the_subcommands_and_their_options() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let script = text(|o| completions(shell, o));
            for word in ["trace", "record", "replay", "cow-only", "dedup-window"] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
        }
        // Hook names are offered as values.
        let bash = text(|o| completions(clap_complete::Shell::Bash, o));
        assert!(bash.contains("vm_normal_page_pmd"), "hooks complete");
        assert!(bash.contains("complete -F _pfnwatch"), "a bash completion");
    }

    #[test]
    fn man_pages_document_every_subcommand() {
        let main = text(|o| page(None, o));
        assert!(
            main.starts_with(".ie \\n(.g .ds Aq"),
            "roff: {}",
            &main[..40]
        );
        assert!(main.contains(".TH pfnwatch 1"), "{main}");
        // The rules close it, with the kernel code behind each.
        assert!(main.contains("R9 kernel_bad_page_map (critical)"), "{main}");
        assert!(main.contains("Sources: 6.1 mm/memory.c"), "{main}");
        for sub in [
            "check",
            "run",
            "trace",
            "record",
            "replay",
            "completions",
            "man",
        ] {
            assert!(main.contains(sub), "pfnwatch.1 lacks {sub}");
        }
        let trace = text(|o| page(Some("trace"), o));
        assert!(trace.contains(".TH pfnwatch-trace 1"), "{trace}");
        assert!(trace.contains("\\-\\-severity"), "{trace}");
        assert!(trace.contains("Ctrl\\-C"), "the long help is in the page");
        let err = page(Some("nope"), &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("\"nope\"") && err.contains("trace"), "{err}");
    }

    /// A writer whose reader went away.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_no_error() {
        completions(clap_complete::Shell::Bash, &mut Closed).unwrap();
        page(None, &mut Closed).unwrap();
    }

    #[test]
    fn writes_one_page_per_command() {
        let dir = std::env::temp_dir().join(format!("pfnwatch-man-{}", std::process::id()));
        let pages = write_pages(&dir).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"pfnwatch.1".to_owned()), "{names:?}");
        assert!(names.contains(&"pfnwatch-replay.1".to_owned()), "{names:?}");
        assert!(!names.contains(&"pfnwatch-help.1".to_owned()), "{names:?}");
        let commands = Cli::command()
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .count();
        assert_eq!(
            names.len(),
            commands + 1,
            "pfnwatch and each command: {names:?}"
        );
        for p in &pages {
            assert!(std::fs::read_to_string(p).unwrap().contains(".TH "));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
