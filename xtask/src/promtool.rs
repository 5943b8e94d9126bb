//! Prometheus's promtool, for the checks of deploy/prometheus/ and of the
//! guest's `/metrics` scrapes.
//!
//! It comes from Debian's `prometheus` package, downloaded through the same
//! private apt root as the kernels and unpacked: installing the package would
//! start a Prometheus server wherever systemd runs, and only promtool is
//! needed. Kept in `<target>/vmtest/tools/`.

use std::{
    fs,
    io::{self, Read as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{apt, apt::AptRoot, arch::Arch, cmd::describe, paths::Paths, protocol::CheckResult};

/// The suite whose promtool is used (the CI machine's own Debian).
const SUITE: &str = "bookworm";
const MEMBER: &str = "./usr/bin/promtool";
/// The scrape the guest sends (metrics_checks.rs), saved per kernel as
/// `<vmtest>/<label>.metrics.prom` by the FILE line handling.
const SCRAPE: &str = "metrics.prom";

/// promtool, downloaded and unpacked the first time: a host tool, so the
/// host's architecture whichever guests run.
pub fn ensure(paths: &Paths) -> Result<PathBuf> {
    let paths = &paths.for_arch(Arch::X86_64);
    let tools = paths.vmtest.join("tools");
    let promtool = tools.join("promtool");
    if runs(&promtool) {
        return Ok(promtool);
    }
    let apt = AptRoot::new(
        &paths.apt_dir(SUITE),
        &apt::host_archive(),
        SUITE,
        paths.arch.debian(),
    )?;
    apt.update()?;
    let deb = apt.download("prometheus", &tools.join("deb"))?;
    extract(&deb, &promtool)?;
    if !runs(&promtool) {
        bail!("{} from {} does not run", promtool.display(), deb.display());
    }
    println!("promtool: {} (from {})", promtool.display(), deb.display());
    Ok(promtool)
}

fn runs(promtool: &Path) -> bool {
    Command::new(promtool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Writes the package's `./usr/bin/promtool` to `to`.
fn extract(deb: &Path, to: &Path) -> Result<()> {
    let mut command = Command::new("dpkg-deb");
    command
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("running {}", describe(&command)))?;
    let stdout = child.stdout.take().context("dpkg-deb has no stdout pipe")?;
    let mut archive = tar::Archive::new(stdout);
    let mut found = false;
    for entry in archive.entries().context("reading the data tarball")? {
        let mut entry = entry.context("reading the data tarball")?;
        if entry.path().context("a tar entry's path")?.as_os_str() != MEMBER {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).context("reading promtool")?;
        let part = to.with_extension("part");
        fs::write(&part, &bytes).with_context(|| format!("writing {}", part.display()))?;
        fs::set_permissions(&part, fs::Permissions::from_mode(0o755))?;
        fs::rename(&part, to).with_context(|| format!("writing {}", to.display()))?;
        found = true;
        break;
    }
    // Let dpkg-deb finish writing before it is waited for.
    io::copy(&mut archive.into_inner(), &mut io::sink()).context("draining dpkg-deb")?;
    let status = child.wait().context("waiting for dpkg-deb")?;
    if !status.success() {
        bail!("{} failed ({status})", describe(&command));
    }
    if !found {
        bail!("{} has no {MEMBER}", deb.display());
    }
    Ok(())
}

/// Runs promtool in `dir`; the check passes when it exits 0. Its output is
/// shown either way (it says what it checked).
pub fn check(name: &str, promtool: &Path, dir: &Path, args: &[&str]) -> CheckResult {
    let mut command = Command::new(promtool);
    command.current_dir(dir).args(args);
    let failure = match command.output() {
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                println!("[host]   {line}");
            }
            (!out.status.success()).then(|| {
                format!(
                    "promtool {} ({}): {}",
                    args.join(" "),
                    out.status,
                    text.trim()
                )
            })
        }
        Err(err) => Some(format!("cannot run {}: {err}", describe(&command))),
    };
    CheckResult {
        name: name.to_owned(),
        failure,
    }
}

/// Before a boot: no scrape from an earlier run may pass for this one's.
pub fn forget_scrape(label: &str, paths: &Paths) {
    let _ = fs::remove_file(scrape_path(label, paths));
}

fn scrape_path(label: &str, paths: &Paths) -> PathBuf {
    paths.vmtest.join(format!("{label}.{SCRAPE}"))
}

/// After a boot: `promtool check metrics` (format and naming lint) on the
/// scrape the guest sent.
pub fn check_scrape(label: &str, paths: &Paths) -> CheckResult {
    let name = "promtool-check-metrics";
    let scrape = scrape_path(label, paths);
    let failed = |reason: String| CheckResult {
        name: name.to_owned(),
        failure: Some(reason),
    };
    let text = match fs::read(&scrape) {
        Ok(text) => text,
        Err(err) => {
            return failed(format!(
                "the guest sent no {SCRAPE} ({}: {err})",
                scrape.display()
            ));
        }
    };
    let promtool = match ensure(paths) {
        Ok(promtool) => promtool,
        Err(err) => return failed(format!("{err:#}")),
    };
    let run = || -> Result<std::process::Output> {
        let mut child = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running promtool check metrics")?;
        io::Write::write_all(&mut child.stdin.take().context("promtool's stdin")?, &text)
            .context("writing the scrape to promtool")?;
        child.wait_with_output().context("waiting for promtool")
    };
    match run() {
        Ok(out) if out.status.success() => CheckResult {
            name: name.to_owned(),
            failure: None,
        },
        Ok(out) => failed(format!(
            "{} ({}): {}{}",
            scrape.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(err) => failed(format!("{err:#}")),
    }
}
