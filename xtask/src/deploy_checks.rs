//! The host steps that check deploy/: the Debian package (deb.rs; its
//! contents listed, lintian without errors), the systemd unit (`systemd-analyze
//! verify` against the package's own files, and its `security` exposure
//! against the README's figure), and the Prometheus files (`promtool check
//! config`, `check rules`, `test rules`).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use object::Object as _;

use crate::{
    cmd::describe,
    deb::{self, output},
    paths::Paths,
    promtool,
    protocol::CheckResult,
};

const UNIT: &str = "pfnwatch.service";
/// What the package must carry.
const PACKAGED: [&str; 9] = [
    "./usr/bin/pfnwatch",
    "./etc/pfnwatch/pfnwatch.toml",
    "/systemd/system/pfnwatch.service",
    "./usr/share/man/man1/pfnwatch.1.gz",
    "./usr/share/man/man1/pfnwatch-run.1.gz",
    "./usr/share/bash-completion/completions/pfnwatch",
    "./usr/share/zsh/vendor-completions/_pfnwatch",
    "./usr/share/fish/vendor_completions.d/pfnwatch.fish",
    "./usr/share/doc/pfnwatch/changelog.Debian.gz",
];

pub fn run(paths: &Paths) -> Vec<CheckResult> {
    let mut checks = Vec::new();
    let deb = package(paths);
    let root = deb.as_ref().ok().map(|deb| verify_root(paths, deb));
    checks.push(result(
        "deb",
        deb.as_ref()
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{e:#}")),
    ));
    checks.push(result(
        "lintian",
        match &deb {
            Ok(deb) => lintian(deb),
            Err(_) => Err(anyhow::anyhow!("needs the package (see deb)")),
        },
    ));
    checks.push(result(
        "systemd-verify",
        match root {
            Some(Ok(root)) => verify(&root),
            Some(Err(err)) => Err(err),
            None => Err(anyhow::anyhow!("needs the package's files (see deb)")),
        },
    ));
    checks.push(result("systemd-security", security(paths)));
    checks.push(result("kubernetes-validate", kubernetes(paths)));
    let dir = paths.root.join("deploy/prometheus");
    match promtool::ensure(paths) {
        Ok(promtool) => {
            for (name, args) in [
                (
                    "promtool-check-config",
                    &["check", "config", "prometheus.yml"][..],
                ),
                (
                    "promtool-check-rules",
                    &["check", "rules", "pfnwatch.rules.yml"],
                ),
                (
                    "promtool-test-rules",
                    &["test", "rules", "pfnwatch.rules.test.yml"],
                ),
            ] {
                println!("[host] + promtool {}", args.join(" "));
                checks.push(report(promtool::check(name, &promtool, &dir, args)));
            }
        }
        Err(err) => checks.push(result("promtool", Err(err))),
    }
    checks
}

fn result(name: &str, outcome: Result<()>) -> CheckResult {
    report(CheckResult {
        name: name.to_owned(),
        failure: outcome.err().map(|err| format!("{err:#}")),
    })
}

fn report(check: CheckResult) -> CheckResult {
    match &check.failure {
        None => println!("[host] PASS {}", check.name),
        Some(reason) => println!("[host] FAIL {}: {reason}", check.name),
    }
    check
}

/// The package for another architecture (`paths.arch`): built like the
/// host's, with the same contents checks, the architecture in its control
/// file, the binary of that machine, and lintian.
pub fn foreign_package(paths: &Paths) -> Vec<CheckResult> {
    let name = format!("deb-{}", paths.arch);
    let deb = package(paths).and_then(|deb| {
        let info = output(
            Command::new("dpkg-deb")
                .arg("--field")
                .arg(&deb)
                .arg("Architecture"),
        )?;
        if info.trim() != paths.arch.debian() {
            bail!("{} says Architecture: {}", deb.display(), info.trim());
        }
        let dir = paths.vmtest.join("deb").join("unpacked");
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
        let binary = dir.join("usr/bin/pfnwatch");
        crate::build::ensure_static(&binary)?;
        let data = fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
        let machine = object::read::File::parse(data.as_slice())
            .with_context(|| format!("parsing {}", binary.display()))?
            .architecture();
        if machine != object::Architecture::Aarch64 {
            bail!("{} is built for {machine:?}", binary.display());
        }
        Ok(deb)
    });
    let lint = match &deb {
        Ok(deb) => lintian(deb),
        Err(_) => Err(anyhow::anyhow!("needs the package (see {name})")),
    };
    vec![
        result(&name, deb.map(|_| ())),
        result(&format!("lintian-{}", paths.arch), lint),
    ]
}

/// The package (deb.rs), listed, and what it must hold checked.
fn package(paths: &Paths) -> Result<PathBuf> {
    let deb = deb::build(paths)?;
    let contents = output(Command::new("dpkg-deb").arg("--contents").arg(&deb))?;
    let info = output(Command::new("dpkg-deb").arg("--info").arg(&deb))?;
    println!("[host] {}:", deb.display());
    for line in info.lines().chain(contents.lines()) {
        println!("[host]   {line}");
    }
    let missing: Vec<&str> = PACKAGED
        .iter()
        .filter(|path| !contents.lines().any(|l| l.ends_with(*path)))
        .copied()
        .collect();
    if !missing.is_empty() {
        bail!("{} lacks {}", deb.display(), missing.join(", "));
    }
    let conffiles = output(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(&deb)
            .arg("conffiles"),
    )?;
    if !conffiles
        .lines()
        .any(|l| l.trim() == "/etc/pfnwatch/pfnwatch.toml")
    {
        bail!("/etc/pfnwatch/pfnwatch.toml is not a conffile ({conffiles:?})");
    }
    let depends = info
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Depends:"))
        .unwrap_or("");
    // procps for the unit's /bin/kill, nothing else: a library there would
    // mean the binary is not static.
    if depends.trim() != "procps" {
        bail!("the package should depend on procps alone (its binary is static):\n{info}");
    }
    let postinst = output(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(&deb)
            .arg("postinst"),
    )?;
    if !postinst.contains("deb-systemd-helper enable pfnwatch.service") {
        bail!("the package's postinst does not enable the unit:\n{postinst}");
    }
    Ok(deb)
}

/// `lintian` on the package: errors fail, warnings and the rest are shown.
/// Its overrides ship in the package (deploy/debian/lintian-overrides).
fn lintian(deb: &Path) -> Result<()> {
    let mut command = Command::new("lintian");
    command
        .args(["--pedantic", "--display-info", "--no-tag-display-limit"])
        .arg(deb);
    println!("[host] + {}", describe(&command));
    let out = command
        .output()
        .with_context(|| format!("running {}", describe(&command)))?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        println!("[host]   {line}");
    }
    let errors = lintian_errors(&text);
    if !errors.is_empty() {
        bail!("lintian reports errors:\n{}", errors.join("\n"));
    }
    // lintian exits 2 for a run that failed (not for tags it found).
    if out.status.code().is_none_or(|code| code > 1) {
        bail!(
            "{} failed ({}): {}",
            describe(&command),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// deploy/kubernetes/ against the Kubernetes API's schemas, strictly (an
/// unknown field is an error). The PodMonitor is a Prometheus Operator
/// custom resource, which has no schema there: kubernetes-validate warns
/// and skips it.
fn kubernetes(paths: &Paths) -> Result<()> {
    let program = crate::preflight::kubernetes_validate(&paths.vmtest.join("venv"))?;
    let dir = paths.root.join("deploy/kubernetes");
    let mut manifests: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    manifests.sort();
    let mut command = Command::new(program);
    command.arg("--strict").args(&manifests);
    println!("[host] + {}", describe(&command));
    let out = command
        .output()
        .with_context(|| format!("running {}", describe(&command)))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for line in text.lines() {
        println!("[host]   {line}");
    }
    let validated = text.lines().filter(|l| l.starts_with("INFO ")).count();
    if !out.status.success() || validated == 0 {
        bail!(
            "{} failed ({}), {validated} resources passed",
            describe(&command),
            out.status
        );
    }
    Ok(())
}

/// The `E:` tags of lintian's output.
fn lintian_errors(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("E: ")).collect()
}

/// A root for `systemd-analyze verify --root`: the package unpacked as it
/// would be installed, the host's systemd units (the targets the unit
/// names), and the host programs its Exec lines run that it does not ship.
fn verify_root(paths: &Paths, deb: &Path) -> Result<PathBuf> {
    let root = paths.vmtest.join("verify-root");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("clearing {}", root.display()))?;
    }
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    output(
        Command::new("dpkg-deb")
            .arg("--extract")
            .arg(deb)
            .arg(&root),
    )?;
    let units = Path::new("/usr/lib/systemd/system");
    copy_dir(units, &root.join(units.strip_prefix("/")?))?;
    // Merged /usr, as on the host: /bin/kill is /usr/bin/kill.
    for dir in ["bin", "sbin", "lib"] {
        let link = root.join(dir);
        if !link.exists() {
            std::os::unix::fs::symlink(format!("usr/{dir}"), &link)
                .with_context(|| format!("linking {}", link.display()))?;
        }
    }
    let unit = fs::read_to_string(paths.root.join("deploy").join(UNIT))
        .with_context(|| format!("reading deploy/{UNIT}"))?;
    for program in exec_programs(&unit) {
        if root.join(program.trim_start_matches('/')).exists() {
            continue; // the package ships it
        }
        let host = fs::canonicalize(program).with_context(|| format!("{UNIT} runs {program}"))?;
        let to = root.join(host.strip_prefix("/")?);
        fs::copy(&host, &to).with_context(|| format!("copying {}", host.display()))?;
    }
    Ok(root)
}

/// The programs a unit's Exec*= lines run (their first word, without the
/// `-@:+!` prefixes).
fn exec_programs(unit: &str) -> Vec<&str> {
    unit.lines()
        .filter(|l| l.starts_with("Exec"))
        .filter_map(|l| l.split_once('=')?.1.split_whitespace().next())
        .map(|p| p.trim_start_matches(['-', '@', ':', '+', '!']))
        .filter(|p| p.starts_with('/'))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if dst.exists() {
            continue;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
        }
    }
    Ok(())
}

/// `systemd-analyze verify` of the packaged unit: its Exec programs must
/// exist and every setting parse; any complaint about it fails the check.
fn verify(root: &Path) -> Result<()> {
    let unit = ["usr/lib/systemd/system", "lib/systemd/system"]
        .iter()
        .map(|dir| root.join(dir).join(UNIT))
        .find(|path| path.is_file())
        .with_context(|| format!("the package has no {UNIT}"))?;
    let mut command = Command::new("systemd-analyze");
    command
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg(&unit);
    println!("[host] + {}", describe(&command));
    let out = command
        .output()
        .with_context(|| format!("running {}", describe(&command)))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let complaints: Vec<&str> = said.lines().filter(|l| l.contains(UNIT)).collect();
    if !out.status.success() || !complaints.is_empty() {
        bail!("{} ({}): {}", describe(&command), out.status, said.trim());
    }
    Ok(())
}

/// `systemd-analyze security` of deploy/pfnwatch.service: its overall
/// exposure must not exceed the figure the README records.
fn security(paths: &Paths) -> Result<()> {
    let unit = paths.root.join("deploy").join(UNIT);
    let readme = paths.root.join("README.md");
    let recorded = recorded_exposure(
        &fs::read_to_string(&readme).with_context(|| format!("reading {}", readme.display()))?,
    )
    .with_context(|| format!("{} records no `exposure level: N.N`", readme.display()))?;
    let mut command = Command::new("systemd-analyze");
    command
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit);
    println!("[host] + {}", describe(&command));
    let out = command
        .output()
        .with_context(|| format!("running {}", describe(&command)))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let measured = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for pfnwatch.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .with_context(|| {
            format!(
                "{} printed no exposure ({}): {}",
                describe(&command),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
    println!("[host]   exposure level {measured} (README: {recorded})");
    if measured > recorded {
        bail!("the unit's exposure level is {measured}, above the README's {recorded}");
    }
    Ok(())
}

/// The number after "exposure level: " in the README.
fn recorded_exposure(readme: &str) -> Option<f64> {
    let (_, rest) = readme.split_once("exposure level: ")?;
    rest.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?
        .trim_end_matches('.')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_programs_a_unit_runs() {
        let unit = "[Service]\nExecStart=/usr/bin/pfnwatch run\nExecReload=-/bin/kill -HUP $MAINPID\n\
                    ExecStop=!kill\nEnvironment=A=/x\n";
        assert_eq!(exec_programs(unit), ["/usr/bin/pfnwatch", "/bin/kill"]);
        let shipped = include_str!("../../deploy/pfnwatch.service");
        assert_eq!(exec_programs(shipped), ["/usr/bin/pfnwatch", "/bin/kill"]);
    }

    #[test]
    fn finds_the_recorded_exposure() {
        assert_eq!(
            recorded_exposure("the unit's exposure level: 1.6 (OK) with systemd 252."),
            Some(1.6)
        );
        assert_eq!(recorded_exposure("exposure level: 2."), Some(2.0));
        assert_eq!(recorded_exposure("no figure"), None);
        let readme = include_str!("../../README.md");
        assert!(recorded_exposure(readme).is_some_and(|n| n < 10.0));
    }

    #[test]
    fn only_lintian_errors_fail() {
        let text = "E: pfnwatch: malformed-contact Maintainer pfnwatch\n\
                    W: pfnwatch: empty-field Depends\n\
                    I: pfnwatch: no-md5sums-control-file\n\
                    N: E: not a tag\n";
        assert_eq!(
            lintian_errors(text),
            ["E: pfnwatch: malformed-contact Maintainer pfnwatch"]
        );
        assert!(lintian_errors("W: pfnwatch: x\n").is_empty());
    }
}
