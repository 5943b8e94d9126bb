//! `cargo xtask fuzz`: every cargo-fuzz target in `fuzz/` for a bounded
//! time each, from its committed corpus (`fuzz/corpus/<target>`), under
//! libFuzzer's memory limits; any crash, leak, timeout or limit is a
//! failure naming the input. `cargo xtask test` runs it with a short bound.
//!
//! What libFuzzer finds on the way goes to `<target>/fuzz/corpus/<target>`
//! (the committed corpus stays the seeds and the inputs that once crashed),
//! its output to `<target>/fuzz/<target>.log`, and a crash input to
//! `fuzz/artifacts/<target>/`. A target's dictionary, when it has one, is
//! `fuzz/dict/<target>.dict`.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{cmd::describe, paths::Paths, protocol::CheckResult};

/// cargo-fuzz from crates.io, pinned; installed once per machine into
/// cargo's bin directory (about two minutes on two cores), then reused.
const CARGO_FUZZ: &str = "0.13.2";
/// libFuzzer needs sanitizer coverage: a nightly compiler.
const TOOLCHAIN: &str = "nightly";
/// One allocation larger than this is a failure: every input is a few KiB
/// (libFuzzer's default -max_len), so nothing needs more.
const MALLOC_LIMIT_MB: u32 = 64;
/// The whole process (AddressSanitizer's shadow and quarantine included).
const RSS_LIMIT_MB: u32 = 2048;
/// One input taking longer than this is a hang (the machine may be busy).
const INPUT_TIMEOUT_SECS: u32 = 60;

#[derive(Debug, Clone)]
pub struct Options {
    /// Seconds of fuzzing per target.
    pub seconds: u64,
    /// Targets to run; empty: all.
    pub targets: Vec<String>,
}

/// Builds the targets once, then runs each; one result for the build and
/// one per target.
pub fn run(paths: &Paths, opts: &Options) -> Vec<CheckResult> {
    let prepared = ensure_toolchain()
        .and_then(|()| ensure_cargo_fuzz())
        .and_then(|()| select(paths, &opts.targets))
        .and_then(|targets| build(paths).map(|()| targets));
    let targets = match prepared {
        Ok(targets) => {
            println!("[host] PASS fuzz-build");
            targets
        }
        Err(err) => {
            let failure = format!("{err:#}");
            println!("[host] FAIL fuzz-build: {failure}");
            return vec![CheckResult {
                name: "fuzz-build".to_owned(),
                failure: Some(failure),
            }];
        }
    };
    let mut checks = vec![CheckResult {
        name: "fuzz-build".to_owned(),
        failure: None,
    }];
    for target in targets {
        let name = format!("fuzz-{target}");
        let failure = match fuzz_one(paths, &target, opts.seconds) {
            Ok(stats) => {
                println!("[host] PASS {name} ({stats})");
                None
            }
            Err(err) => {
                let reason = format!("{err:#}");
                println!("[host] FAIL {name}: {reason}");
                Some(reason)
            }
        };
        checks.push(CheckResult { name, failure });
    }
    checks
}

/// `cargo +nightly ...` through rustup's proxy, whichever cargo runs xtask.
fn nightly_cargo(paths: &Paths) -> Command {
    let mut command = Command::new("rustup");
    command
        .args(["run", TOOLCHAIN, "cargo"])
        .current_dir(&paths.root)
        // cargo-fuzz sets its own flags; the caller's are for the host build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS");
    command
}

fn ensure_toolchain() -> Result<()> {
    let has = Command::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if has {
        return Ok(());
    }
    let mut install = Command::new("rustup");
    install.args(["toolchain", "install", TOOLCHAIN, "--profile", "minimal"]);
    println!("[host] + {}", describe(&install));
    let status = install.status().with_context(|| {
        format!(
            "running {} (fuzzing needs rustup and a {TOOLCHAIN} toolchain)",
            describe(&install)
        )
    })?;
    if !status.success() {
        bail!("{} failed ({status})", describe(&install));
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let version = Command::new(&cargo)
        .args(["fuzz", "--version"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
    if version.as_deref().is_some_and(|v| v.contains(CARGO_FUZZ)) {
        return Ok(());
    }
    let mut install = Command::new(&cargo);
    install.args(["install", "--locked", "cargo-fuzz", "--version", CARGO_FUZZ]);
    println!("[host] + {}", describe(&install));
    let status = install
        .status()
        .with_context(|| format!("running {}", describe(&install)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(&install));
    }
    Ok(())
}

/// The targets `fuzz/Cargo.toml` declares (`cargo fuzz list`), or those
/// asked for, each checked to exist.
fn select(paths: &Paths, wanted: &[String]) -> Result<Vec<String>> {
    let mut list = nightly_cargo(paths);
    list.args(["fuzz", "list"]);
    let out = list
        .output()
        .with_context(|| format!("running {}", describe(&list)))?;
    crate::cmd::ensure_success(&list, &out)?;
    let known: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    pick(&known, wanted)
}

fn pick(known: &[String], wanted: &[String]) -> Result<Vec<String>> {
    if known.is_empty() {
        bail!("`cargo fuzz list` lists no targets in fuzz/");
    }
    if wanted.is_empty() {
        return Ok(known.to_vec());
    }
    match wanted.iter().find(|w| !known.contains(w)) {
        Some(unknown) => bail!("no fuzz target {unknown:?}; fuzz/ has {}", known.join(", ")),
        None => Ok(known
            .iter()
            .filter(|k| wanted.contains(k))
            .cloned()
            .collect()),
    }
}

fn build(paths: &Paths) -> Result<()> {
    let mut build = nightly_cargo(paths);
    build.args(["fuzz", "build"]);
    println!("[host] + {}", describe(&build));
    let status = build
        .status()
        .with_context(|| format!("running {}", describe(&build)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(&build));
    }
    Ok(())
}

/// The libFuzzer flags of one bounded run.
fn libfuzzer_args(seconds: u64) -> Vec<String> {
    vec![
        format!("-max_total_time={seconds}"),
        format!("-malloc_limit_mb={MALLOC_LIMIT_MB}"),
        format!("-rss_limit_mb={RSS_LIMIT_MB}"),
        format!("-timeout={INPUT_TIMEOUT_SECS}"),
        "-print_final_stats=1".to_owned(),
    ]
}

/// Fuzzes `target` for `seconds`; the run's figures, or why it failed
/// with the crash input and the tail of libFuzzer's output.
fn fuzz_one(paths: &Paths, target: &str, seconds: u64) -> Result<String> {
    let work = paths.fuzz().join("corpus").join(target);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let log_path = paths.fuzz().join(format!("{target}.log"));
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let seeds = paths.root.join("fuzz/corpus").join(target);
    let dict = paths.root.join("fuzz/dict").join(format!("{target}.dict"));
    let mut run = nightly_cargo(paths);
    // libFuzzer adds what it finds to the first directory only.
    run.args(["fuzz", "run", target])
        .arg(&work)
        .arg(&seeds)
        .arg("--")
        .args(libfuzzer_args(seconds));
    // The format's own words: what random bytes seldom spell.
    if dict.is_file() {
        run.arg(format!("-dict={}", dict.display()));
    }
    run.stdout(log.try_clone().context("duplicating the log's handle")?)
        .stderr(log);
    println!("[host] + {}", describe(&run));
    let status = run
        .status()
        .with_context(|| format!("running {}", describe(&run)))?;
    let output = fs::read_to_string(&log_path).unwrap_or_default();
    if status.success() {
        return Ok(stats(&output).unwrap_or_else(|| "no figures in its output".to_owned()));
    }
    let crash = crash_input(&output)
        .map(|input| {
            let input = input.display();
            format!(
                "; the input is {input} (`cargo +{TOOLCHAIN} fuzz run {target} {input}` replays it)"
            )
        })
        .unwrap_or_default();
    bail!(
        "{} failed ({status}){crash}; its output ends:\n{}\n(all of it in {})",
        describe(&run),
        tail(&output, 30),
        log_path.display()
    )
}

/// "N runs in S s, corpus C" from libFuzzer's closing lines.
fn stats(output: &str) -> Option<String> {
    let done = output.lines().rev().find(|l| l.starts_with("Done "))?;
    let runs = done.split_whitespace().nth(1)?;
    let secs = done.split_whitespace().nth(4)?;
    let corpus = output
        .lines()
        .rev()
        .find(|l| l.contains("DONE "))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "corp:").nth(1))
        .unwrap_or("?");
    Some(format!("{runs} runs in {secs} s, corpus {corpus}"))
}

/// Where libFuzzer wrote the input that failed.
fn crash_input(output: &str) -> Option<PathBuf> {
    output
        .lines()
        .find_map(|l| l.split_once("Test unit written to "))
        .map(|(_, path)| Path::new(path.trim()).to_owned())
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn targets_are_all_by_default_or_those_named_in_fuzz_order() {
        let known = names(&["a", "b", "c"]);
        assert_eq!(pick(&known, &[]).unwrap(), known);
        assert_eq!(
            pick(&known, &names(&["c", "a"])).unwrap(),
            names(&["a", "c"])
        );
        let err = pick(&known, &names(&["d"])).unwrap_err().to_string();
        assert_eq!(err, "no fuzz target \"d\"; fuzz/ has a, b, c");
        assert!(pick(&[], &[]).is_err());
    }

    #[test]
    fn every_committed_corpus_has_its_target() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let manifest = fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
        for dir in fs::read_dir(fuzz.join("corpus")).unwrap() {
            let name = dir.unwrap().file_name().into_string().unwrap();
            assert!(
                manifest.contains(&format!("name = \"{name}\"")),
                "fuzz/corpus/{name} has no target in fuzz/Cargo.toml"
            );
        }
    }

    #[test]
    fn every_dictionary_has_its_target_and_parses() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let manifest = fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
        for file in fs::read_dir(fuzz.join("dict")).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            assert!(
                manifest.contains(&format!("name = \"{name}\"")),
                "{} has no target in fuzz/Cargo.toml",
                path.display()
            );
            // libFuzzer's format: comments, or one quoted token a line.
            for line in fs::read_to_string(&path).unwrap().lines() {
                assert!(
                    line.starts_with('#')
                        || (line.len() > 2 && line.starts_with('"') && line.ends_with('"')),
                    "{}: {line}",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn reads_libfuzzers_figures_and_crash_input() {
        let done = "#65802\tDONE   cov: 4611 ft: 12393 corp: 1335/651Kb lim: 1877 exec/s: 2122 rss: 431Mb\n\
                    Done 65802 runs in 31 second(s)\n";
        assert_eq!(
            stats(done).as_deref(),
            Some("65802 runs in 31 s, corpus 1335/651Kb")
        );
        let crash = "SUMMARY: libFuzzer: deadly signal\nartifact_prefix='/w/fuzz/artifacts/t/'; \
                     Test unit written to /w/fuzz/artifacts/t/crash-ac93\n";
        assert_eq!(
            crash_input(crash),
            Some(PathBuf::from("/w/fuzz/artifacts/t/crash-ac93"))
        );
        assert_eq!(stats(crash), None);
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
    }

    #[test]
    fn runs_are_bounded_in_time_and_memory() {
        let args = libfuzzer_args(20);
        assert!(args.contains(&"-max_total_time=20".to_owned()));
        assert!(args.iter().any(|a| a.starts_with("-malloc_limit_mb=")));
        assert!(args.iter().any(|a| a.starts_with("-rss_limit_mb=")));
    }
}
