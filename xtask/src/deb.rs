//! The Debian package: `cargo xtask deb`, and the first step of the deploy/
//! checks and of deploy-test.
//!
//! cargo-deb packs files; the man pages and shell completions it packs are
//! generated here first, by the static pfnwatch itself (`pfnwatch man --dir`,
//! `pfnwatch completions SHELL`), into `target/deb-assets/`, where
//! pfnwatch/Cargo.toml's assets name them.

use std::{
    env,
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    arch::Arch,
    build,
    cmd::{describe, ensure_success},
    paths::Paths,
};

/// cargo-deb from crates.io, pinned; installed once per machine into
/// cargo's bin directory (about two minutes on two cores), then reused.
const CARGO_DEB: &str = "3.8.0";
/// Completion scripts, by shell, under the names Debian's directories expect
/// (the Cargo.toml assets map them to bash-completion's, zsh's and fish's
/// vendor directories).
const COMPLETIONS: [(&str, &str); 3] = [
    ("bash", "pfnwatch.bash"),
    ("zsh", "_pfnwatch"),
    ("fish", "pfnwatch.fish"),
];

/// Builds the package for `paths.arch`; returns the .deb's path (in
/// `<vmtest>/deb/`, the architecture's vmtest directory).
pub fn build(paths: &Paths) -> Result<PathBuf> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    ensure_cargo_deb(&cargo)?;
    // The man pages and completions come from a pfnwatch that runs here:
    // the host's, whichever architecture is packed (they are the same).
    let host_pfnwatch = build_static(&paths.for_arch(Arch::X86_64), &cargo)?;
    generate_assets(&host_pfnwatch, &paths.root.join("target/deb-assets"))?;
    if !paths.arch.is_host() {
        stage_cross_binary(paths)?;
    }
    let out_dir = paths.vmtest.join("deb");
    if out_dir.exists() {
        fs::remove_dir_all(&out_dir).with_context(|| format!("clearing {}", out_dir.display()))?;
    }
    let mut command = Command::new(&cargo);
    command
        .current_dir(&paths.root)
        .args(["deb", "--locked", "--no-build", "-p", "pfnwatch"])
        .args(["--target", paths.arch.rust_target()])
        .arg("--output")
        .arg(&out_dir)
        .env("RUSTFLAGS", build::guest_rustflags())
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if !paths.arch.is_host() {
        // The host's strip cannot read an aarch64 ELF: cross.rs stripped
        // it with the cross binutils.
        command.arg("--no-strip");
    }
    println!("[host] + {}", describe(&command));
    let status = command
        .status()
        .with_context(|| format!("running {}", describe(&command)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(&command));
    }
    fs::read_dir(&out_dir)
        .with_context(|| format!("listing {}", out_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| path.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("cargo deb left no .deb in {}", out_dir.display()))
}

/// The static pfnwatch, built as the guest's is (same target and flags, so
/// one build serves both); returns its path.
fn build_static(paths: &Paths, cargo: &OsStr) -> Result<PathBuf> {
    let mut command = Command::new(cargo);
    command
        .current_dir(&paths.root)
        .args(["build", "--locked", "--release", "-p", "pfnwatch"])
        .args(["--target", build::GUEST_TARGET])
        .env("RUSTFLAGS", build::guest_rustflags())
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    println!("[host] + {}", describe(&command));
    crate::cmd::run_inherited(&mut command)?;
    let target = paths
        .vmtest
        .parent()
        .context("target/vmtest has no parent")?;
    let binary = target
        .join(build::GUEST_TARGET)
        .join("release")
        .join("pfnwatch");
    build::ensure_static(&binary)?;
    Ok(binary)
}

/// The cross-built static pfnwatch (cross.rs) where cargo-deb looks for
/// it: `target/<triple>/release/pfnwatch`.
fn stage_cross_binary(paths: &Paths) -> Result<()> {
    let built = crate::cross::build_guest(paths)?.pfnwatch;
    let built = crate::cross::strip(paths, &built)?;
    let dir = paths
        .root
        .join("target")
        .join(paths.arch.rust_target())
        .join("release");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let to = dir.join("pfnwatch");
    fs::copy(&built, &to)
        .with_context(|| format!("copying {} to {}", built.display(), to.display()))?;
    Ok(())
}

/// `man/*.1` and `completions/*` under `dir`, from `pfnwatch` itself.
pub fn generate_assets(pfnwatch: &Path, dir: &Path) -> Result<()> {
    let man = dir.join("man");
    if man.exists() {
        fs::remove_dir_all(&man).with_context(|| format!("clearing {}", man.display()))?;
    }
    output(Command::new(pfnwatch).arg("man").arg("--dir").arg(&man))?;
    let completions = dir.join("completions");
    fs::create_dir_all(&completions)
        .with_context(|| format!("creating {}", completions.display()))?;
    for (shell, name) in COMPLETIONS {
        let script = output(Command::new(pfnwatch).args(["completions", shell]))?;
        let path = completions.join(name);
        fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn ensure_cargo_deb(cargo: &OsStr) -> Result<()> {
    let version = Command::new(cargo)
        .args(["deb", "--version"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
    if version.as_deref().is_some_and(|v| v.contains(CARGO_DEB)) {
        return Ok(());
    }
    let mut install = Command::new(cargo);
    install.args(["install", "--locked", "cargo-deb", "--version", CARGO_DEB]);
    println!("[host] + {}", describe(&install));
    crate::cmd::run_inherited(&mut install)
}

/// A command's stdout, or an error with what it said.
pub fn output(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("running {}", describe(command)))?;
    ensure_success(command, &out)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_toml_packs_every_generated_asset() {
        let manifest = include_str!("../../pfnwatch/Cargo.toml");
        for (_, name) in COMPLETIONS {
            assert!(
                manifest.contains(&format!("target/deb-assets/completions/{name}\"")),
                "{name}"
            );
        }
        assert!(manifest.contains("target/deb-assets/man/*.1"));
        for dir in [
            "usr/share/man/man1/",
            "usr/share/bash-completion/completions/pfnwatch",
            "usr/share/zsh/vendor-completions/_pfnwatch",
            "usr/share/fish/vendor_completions.d/pfnwatch.fish",
        ] {
            assert!(manifest.contains(dir), "{dir}");
        }
    }
}
