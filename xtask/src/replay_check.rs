//! The host's half of the record/replay test. In the guest, `pfnwatch
//! record` captured a few scenarios and the guest sent the capture and
//! record's live output (trace_checks.rs). Here the host's pfnwatch — no
//! kernel programs, no root needed — replays the capture, and its output
//! must be the live output: the same records, counts and alerts.

use std::{
    collections::BTreeMap,
    io::Read as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{build::GUEST_TARGET, paths::Paths, protocol::CheckResult};
use pfnwatch_testbed_protocol::files::GuestFiles;

/// The files trace_checks.rs sends.
const CAPTURE: &str = "capture.gz";
const LIVE: &str = "live.jsonl.gz";

/// The pfnwatch that replays: the one `--guest-dir` names, or the one the
/// x86-64 guest build made. It is static, so it runs on the host as it is;
/// an arm64 guest's capture is replayed by it too (a capture crosses hosts).
pub fn host_pfnwatch(paths: &Paths, guest_dir: Option<&Path>) -> PathBuf {
    match guest_dir {
        Some(dir) if paths.arch.is_host() => dir.join("pfnwatch"),
        _ => {
            let host = paths.for_arch(crate::arch::Arch::X86_64);
            let target = host.vmtest.parent().unwrap_or(&host.vmtest);
            target.join(GUEST_TARGET).join("release").join("pfnwatch")
        }
    }
}

/// Saves the guest's files as `<vmtest>/<label>.<name>` and checks the
/// host's replay of the capture against the guest's live output.
pub fn run(label: &str, paths: &Paths, pfnwatch: &Path, files: GuestFiles) -> Vec<CheckResult> {
    let (files, broken) = files.finish();
    let mut checks: Vec<CheckResult> = broken
        .into_iter()
        .map(|(name, reason)| failed(&name, reason))
        .collect();
    let mut saved = BTreeMap::new();
    for (name, data) in &files {
        let path = paths.vmtest.join(format!("{label}.{name}"));
        match std::fs::write(&path, data) {
            Ok(()) => {
                saved.insert(name.as_str(), path);
            }
            Err(err) => checks.push(failed(
                &format!("file/{name}"),
                format!("writing {}: {err}", path.display()),
            )),
        }
    }
    let (Some(capture), Some(live)) = (saved.get(CAPTURE), files.get(LIVE)) else {
        checks.push(failed(
            "host-replay/files",
            format!(
                "the guest sent no {CAPTURE} and {LIVE} (got: {:?})",
                files.keys()
            ),
        ));
        return checks;
    };
    match compare(pfnwatch, capture, live) {
        Ok(mut found) => checks.append(&mut found),
        Err(err) => checks.push(failed("host-replay/run", format!("{err:#}"))),
    }
    match damaged(pfnwatch, capture) {
        Ok(()) => checks.push(passed("host-replay/damaged")),
        Err(err) => checks.push(failed("host-replay/damaged", format!("{err:#}"))),
    }
    checks
}

/// Replays in JSON and text; the JSON lines must be the live ones.
fn compare(pfnwatch: &Path, capture: &Path, live_gz: &[u8]) -> Result<Vec<CheckResult>> {
    let live = json_lines(&gunzip(live_gz).context("decompressing the live output")?)
        .context("the guest's live output")?;
    let out = replay(pfnwatch, capture, &["--json", "--stack"])?;
    let replayed = json_lines(&out).context("the host replay's output")?;
    let mut checks = Vec::new();

    let source = replayed.first().map(|l| (&l["type"], &l["source"]));
    let ready = source == Some((&Value::from("ready"), &Value::from("replay")));
    let same = |kind: &str| of_type(&live, kind) == of_type(&replayed, kind);
    checks.push(check(
        "host-replay/records",
        ready && same("record"),
        || {
            format!(
                "{} record lines replayed, {} live; first difference: {}",
                of_type(&replayed, "record").len(),
                of_type(&live, "record").len(),
                first_difference(&of_type(&live, "record"), &of_type(&replayed, "record"))
            )
        },
    ));

    let summary = |lines: &[Value]| of_type(lines, "summary").last().map(|s| (*s).clone());
    let (live_sum, replay_sum) = (summary(&live), summary(&replayed));
    let part = |s: &Option<Value>, keys: &[&str]| -> Vec<Value> {
        keys.iter()
            .map(|k| s.as_ref().map_or(Value::Null, |s| s[*k].clone()))
            .collect()
    };
    let counted = ["records", "filtered", "lost", "hooks", "classes", "rules"];
    checks.push(check(
        "host-replay/counts",
        live_sum.is_some()
            && part(&live_sum, &counted) == part(&replay_sum, &counted)
            && same("counts"),
        || {
            format!(
                "summary live {:?}, replayed {:?}",
                part(&live_sum, &counted),
                part(&replay_sum, &counted)
            )
        },
    ));
    checks.push(check(
        "host-replay/alerts",
        !of_type(&live, "alert").is_empty()
            && same("alert")
            && part(&live_sum, &["alerts"]) == part(&replay_sum, &["alerts"]),
        || {
            format!(
                "{} alert lines replayed, {} live; first difference: {}",
                of_type(&replayed, "alert").len(),
                of_type(&live, "alert").len(),
                first_difference(&of_type(&live, "alert"), &of_type(&replayed, "alert"))
            )
        },
    ));

    // Text for people: the same number of records in its summary.
    let records = live_sum
        .as_ref()
        .map_or(Value::Null, |s| s["records"].clone());
    let text = replay(pfnwatch, capture, &["--color", "never"])?;
    let want = format!("summary: {records} records shown");
    checks.push(check(
        "host-replay/text",
        text.lines().any(|l| l.starts_with(&want)) && !text.contains('\x1b'),
        || format!("no {want:?} line (or colour in a pipe) in:\n{text}"),
    ));
    Ok(checks)
}

/// The capture cut short: replay must show what it holds (its ready line
/// and summary at least), then fail naming the place.
fn damaged(pfnwatch: &Path, capture: &Path) -> Result<()> {
    let data = std::fs::read(capture).with_context(|| format!("reading {}", capture.display()))?;
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&data[..])
        .read_to_end(&mut plain)
        .context("gunzip")?;
    let cut = capture.with_extension("cut");
    let keep = plain.len().saturating_sub(10);
    std::fs::write(&cut, &plain[..keep]).with_context(|| format!("writing {}", cut.display()))?;
    let out = Command::new(pfnwatch)
        .args(["replay", "--json"])
        .arg(&cut)
        .output()
        .with_context(|| format!("running {}", pfnwatch.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .last()
        .is_some_and(|l| l.contains("\"type\":\"summary\""));
    if out.status.success() || !summary || !stderr.contains("cut off") {
        bail!(
            "replay of {} cut short: {}, {} bytes on stdout (a summary last: {summary}), \
             stderr {:?}",
            cut.display(),
            out.status,
            out.stdout.len(),
            stderr.trim()
        );
    }
    Ok(())
}

fn replay(pfnwatch: &Path, capture: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(pfnwatch)
        .arg("replay")
        .arg(capture)
        .args(args)
        .output()
        .with_context(|| format!("running {}", pfnwatch.display()))?;
    if !out.status.success() {
        bail!(
            "{} replay {} {}: {}: {}",
            pfnwatch.display(),
            capture.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).context("replay printed something that is not UTF-8")
}

fn gunzip(data: &[u8]) -> Result<String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut text)
        .context("gunzip")?;
    Ok(text)
}

fn json_lines(text: &str) -> Result<Vec<Value>> {
    text.lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("line {}: {l:?}", i + 1)))
        .collect()
}

fn of_type<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == kind).collect()
}

fn first_difference(a: &[&Value], b: &[&Value]) -> String {
    let shorten = |v: Option<&&Value>| {
        let text = v.map_or("(none)".to_owned(), |v| v.to_string());
        text.chars().take(300).collect::<String>()
    };
    match (0..a.len().max(b.len())).find(|i| a.get(*i) != b.get(*i)) {
        None => "none".to_owned(),
        Some(i) => format!(
            "#{i}: live {} / replayed {}",
            shorten(a.get(i)),
            shorten(b.get(i))
        ),
    }
}

fn check(name: &str, ok: bool, why: impl FnOnce() -> String) -> CheckResult {
    CheckResult {
        name: name.to_owned(),
        failure: (!ok).then(why),
    }
}

fn passed(name: &str) -> CheckResult {
    check(name, true, String::new)
}

fn failed(name: &str, reason: String) -> CheckResult {
    check(name, false, || reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn differences_are_shown_by_position() {
        let (a, b, c) = (v(r#"{"n":1}"#), v(r#"{"n":2}"#), v(r#"{"n":3}"#));
        assert_eq!(first_difference(&[&a, &b], &[&a, &b]), "none");
        assert_eq!(
            first_difference(&[&a, &b], &[&a, &c]),
            r#"#1: live {"n":2} / replayed {"n":3}"#
        );
        assert_eq!(
            first_difference(&[&a], &[&a, &c]),
            r#"#1: live (none) / replayed {"n":3}"#
        );
    }

    #[test]
    fn missing_files_fail_the_replay_check() {
        let paths = Paths::at(PathBuf::from("/nonexistent"), std::env::temp_dir());
        let checks = run("t", &paths, Path::new("/bin/false"), GuestFiles::default());
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].name, "host-replay/files");
        assert!(checks[0].failure.is_some());
    }

    #[test]
    fn the_host_binary_is_the_guest_build_or_from_guest_dir() {
        let paths = Paths::at(PathBuf::from("/w"), PathBuf::from("/w/target/vmtest"));
        assert_eq!(
            host_pfnwatch(&paths, None),
            Path::new("/w/target/x86_64-unknown-linux-gnu/release/pfnwatch")
        );
        assert_eq!(
            host_pfnwatch(&paths, Some(Path::new("/g"))),
            Path::new("/g/pfnwatch")
        );
    }
}
