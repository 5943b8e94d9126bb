//! Building the programs that run inside the guest.
//!
//! The guest has no libc, so they are linked statically: `+crt-static` on the gnu
//! target gives a static-pie. `--target` keeps RUSTFLAGS off build scripts and
//! proc macros, which must stay host-dynamic.

use std::{
    collections::BTreeMap,
    env,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};
use object::read::elf::{ElfFile64, ProgramHeader as _};

use crate::{cmd::describe, paths::Paths};

pub const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";
const GUEST_PACKAGES: [&str; 2] = ["pfnwatch", "pfnwatch-testbed"];

/// The executables the initramfs is made of.
#[derive(Debug, Clone)]
pub struct GuestBinaries {
    /// Becomes `/init`.
    pub init: PathBuf,
    /// Become `/bin/pfnwatch` and `/bin/pfnwatch-scenario`.
    pub pfnwatch: PathBuf,
    pub scenario: PathBuf,
    /// The systemd guest's checks (deploy-test); not in the initramfs.
    pub deploy_checks: Option<PathBuf>,
}

pub(crate) const INIT: &str = "pfnwatch-guest-init";
pub(crate) const PFNWATCH: &str = "pfnwatch";
pub(crate) const SCENARIO: &str = "pfnwatch-scenario";
pub(crate) const DEPLOY_CHECKS: &str = pfnwatch_testbed_protocol::deploy::PROGRAM;

/// RUSTFLAGS for static executables: the caller's, plus `+crt-static`. The
/// Debian package (deploy_checks.rs) builds with the same, so one build
/// serves both.
pub fn guest_rustflags() -> String {
    let mut rustflags = env::var("RUSTFLAGS").unwrap_or_default();
    if !rustflags.is_empty() {
        rustflags.push(' ');
    }
    rustflags.push_str("-C target-feature=+crt-static");
    rustflags
}

/// `cargo build --release --target x86_64-unknown-linux-gnu -p pfnwatch -p pfnwatch-scenario`
/// with `+crt-static`; the executables are taken from cargo's JSON messages, so a
/// custom target directory works too.
pub fn build_guest(paths: &Paths) -> Result<GuestBinaries> {
    if !paths.arch.is_host() {
        return crate::cross::build_guest(paths);
    }
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let rustflags = guest_rustflags();

    let mut command = Command::new(cargo);
    command
        .current_dir(&paths.root)
        .args(["build", "--release", "--target", GUEST_TARGET])
        .args(GUEST_PACKAGES.iter().flat_map(|package| ["-p", package]))
        .arg("--message-format=json-render-diagnostics")
        .env("RUSTFLAGS", rustflags)
        // It would take precedence over RUSTFLAGS and drop +crt-static.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdout(Stdio::piped());
    println!("building guest binaries: {}", describe(&command));
    let mut child = command
        .spawn()
        .with_context(|| format!("running {}", describe(&command)))?;
    let stdout = child.stdout.take().context("cargo has no stdout pipe")?;

    let mut executables = BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's messages")?;
        if let Some((name, path)) = executable_from_message(&line) {
            executables.insert(name, path);
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {}", describe(&command)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(&command));
    }

    let take = |name: &str| {
        executables.get(name).cloned().with_context(|| {
            format!(
                "the build produced no `{name}` executable (it produced: {})",
                executables.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    };
    let binaries = GuestBinaries {
        init: take(INIT)?,
        pfnwatch: take(PFNWATCH)?,
        scenario: take(SCENARIO)?,
        deploy_checks: Some(take(DEPLOY_CHECKS)?),
    };
    binaries.check_static()?;
    Ok(binaries)
}

/// Uses binaries built elsewhere (`--guest-dir`): `DIR/pfnwatch-guest-init`,
/// `DIR/pfnwatch`, `DIR/pfnwatch-scenario`.
pub fn prebuilt_guest(dir: &Path) -> Result<GuestBinaries> {
    let find = |name: &str| {
        let path = dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            bail!("--guest-dir {}: no {name} there", dir.display())
        }
    };
    let binaries = GuestBinaries {
        init: find(INIT)?,
        pfnwatch: find(PFNWATCH)?,
        scenario: find(SCENARIO)?,
        deploy_checks: find(DEPLOY_CHECKS).ok(),
    };
    binaries.check_static()?;
    Ok(binaries)
}

impl GuestBinaries {
    pub(crate) fn check_static(&self) -> Result<()> {
        for path in [&self.init, &self.pfnwatch, &self.scenario]
            .into_iter()
            .chain(&self.deploy_checks)
        {
            ensure_static(path)?;
        }
        Ok(())
    }
}

/// A `compiler-artifact` message's executable, keyed by file name.
fn executable_from_message(line: &str) -> Option<(String, PathBuf)> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    let path = PathBuf::from(message.get("executable")?.as_str()?);
    let name = path.file_name()?.to_str()?.to_owned();
    Some((name, path))
}

/// A dynamically linked /init only fails inside the guest, as a panic that says
/// "No working init found"; refusing it here says why.
pub fn ensure_static(path: &Path) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    // A script is allowed (handy for trying the harness); its interpreter is busybox.
    if data.starts_with(b"#!") {
        return Ok(());
    }
    let elf = ElfFile64::<object::Endianness>::parse(data.as_slice())
        .with_context(|| format!("{} is not a 64-bit ELF executable", path.display()))?;
    let dynamic = elf
        .elf_program_headers()
        .iter()
        .any(|header| header.p_type(elf.endian()) == object::elf::PT_INTERP);
    if dynamic {
        bail!(
            "{} is dynamically linked (has an ELF interpreter); the guest has no libc. \
             Build it with RUSTFLAGS=\"-C target-feature=+crt-static\" --target {GUEST_TARGET}",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_executables_out_of_cargo_messages() {
        let artifact = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/pfnwatch#0.1.0","target":{"kind":["bin"],"name":"pfnwatch-guest-init"},"executable":"/w/target/x86_64-unknown-linux-gnu/release/pfnwatch-guest-init","fresh":true}"#;
        assert_eq!(
            executable_from_message(artifact),
            Some((
                "pfnwatch-guest-init".to_owned(),
                PathBuf::from("/w/target/x86_64-unknown-linux-gnu/release/pfnwatch-guest-init")
            ))
        );
        let library = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"pfnwatch_common"},"executable":null}"#;
        assert_eq!(executable_from_message(library), None);
        assert_eq!(
            executable_from_message(r#"{"reason":"build-finished","success":true}"#),
            None
        );
        assert_eq!(executable_from_message("not json"), None);
    }

    #[test]
    fn refuses_a_dynamic_executable_and_accepts_a_script() {
        // /bin/ls is dynamically linked on every Debian.
        let err = ensure_static(Path::new("/bin/ls")).unwrap_err();
        assert!(err.to_string().contains("dynamically linked"), "{err:#}");

        let script = std::env::temp_dir().join(format!("xtask-init-{}.sh", std::process::id()));
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        let result = ensure_static(&script);
        std::fs::remove_file(&script).unwrap();
        result.unwrap();
    }
}
