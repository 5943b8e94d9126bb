//! The guest programs for a foreign architecture (arm64), cross-built.
//!
//! This machine's one Rust toolchain has no aarch64 standard library, and no
//! registry here offers one through rustup. Debian's testing suite does:
//! its rustc with `libstd-rust-dev:arm64`, and the aarch64 cross gcc as
//! linker. So the build runs in a debootstrap'ed testing root (chroot.rs),
//! from a copy of the working tree and the crates vendored from the host's
//! registry (`cargo vendor`, no network in the build). The root and its
//! target directory are kept, so later builds are incremental.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    apt,
    arch::Arch,
    build::{self, GuestBinaries},
    chroot::{Origin, SuiteRoot},
    cmd::{describe, run_inherited},
    paths::Paths,
    preflight::privileged,
};

/// Debian's rustc recent enough for the workspace (rust-version 1.95).
const SUITE: &str = "testing";
/// Where the build happens inside the root.
const BUILD: &str = "build";
/// apt in the root has no access to the host's apt.conf.d, where this
/// machine turns off the date checks its frozen mirror needs.
const APT_OPTIONS: [&str; 4] = [
    "-o",
    "Acquire::Check-Valid-Until=false",
    "-o",
    "Acquire::Check-Date=false",
];

/// Packages of the root itself (debootstrap --include).
fn include() -> BTreeSet<String> {
    [
        "rustc",
        "cargo",
        // The BPF object: pfnwatch-ebpf's build script runs clang.
        "clang",
        "libbpf-dev",
        "gcc-aarch64-linux-gnu",
        "libc6-dev-arm64-cross",
        "ca-certificates",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// Builds pfnwatch and the testbed for `paths.arch` in the cross root and
/// returns the static executables.
pub fn build_guest(paths: &Paths) -> Result<GuestBinaries> {
    let arch = paths.arch;
    if arch != Arch::Arm64 {
        bail!("cross-building for {arch} is not set up (only arm64 is)");
    }
    let started = Instant::now();
    let parent = paths.vmtest.join("cross");
    // Two xtask runs on one target directory would stage into the same
    // tree under each other's build: one builds, the other waits.
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let lock_path = parent.join("build.lock");
    let lock = fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        println!("[{arch}] cross: waiting for another xtask's build");
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
    }
    let (root, origin) = SuiteRoot::ensure(&parent, SUITE, &apt::host_archive(), &include())?;
    if let Origin::Made(took) = origin {
        println!(
            "[{arch}] cross: {SUITE} root made in {:.1} s",
            took.as_secs_f64()
        );
    }
    foreign_std(&root, &parent, arch)?;
    stage(paths, &root)?;
    let target = arch.rust_target();
    let script = format!(
        "cd /{BUILD}/src && CARGO_HOME=/{BUILD}/cargo-home CARGO_TARGET_DIR=/{BUILD}/target \
         PFNWATCH_CLANG=clang RUSTFLAGS='{}' \
         CARGO_TARGET_{}_LINKER=aarch64-linux-gnu-gcc \
         cargo build --release --locked --offline --target {target} -p pfnwatch -p pfnwatch-testbed",
        build::guest_rustflags(),
        target.to_ascii_uppercase().replace('-', "_"),
    );
    println!(
        "[{arch}] cross: cargo build --target {target} in {}",
        root.dir.display()
    );
    root.run(&["sh", "-c", &script])?;
    let out = root
        .dir
        .join(BUILD)
        .join("target")
        .join(target)
        .join("release");
    let take = |name: &str| {
        let path = out.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            bail!("the cross build left no {}", path.display())
        }
    };
    let binaries = GuestBinaries {
        init: take(build::INIT)?,
        pfnwatch: take(build::PFNWATCH)?,
        scenario: take(build::SCENARIO)?,
        deploy_checks: Some(take(build::DEPLOY_CHECKS)?),
    };
    binaries.check_static()?;
    println!(
        "[{arch}] cross: built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(binaries)
}

/// `binary` (built by [`build_guest`], inside the root) stripped with the
/// cross binutils, as cargo-deb strips the host's; returns the copy.
pub fn strip(paths: &Paths, binary: &Path) -> Result<PathBuf> {
    let root = SuiteRoot {
        dir: paths.vmtest.join("cross").join(SUITE),
    };
    let inside = binary
        .strip_prefix(&root.dir)
        .with_context(|| format!("{} is not in {}", binary.display(), root.dir.display()))?;
    let inside = format!("/{}", inside.display());
    let stripped = format!("/{BUILD}/pfnwatch.stripped");
    let strip = format!("{}-strip", paths.arch.gnu_triplet());
    root.run(&[&strip, "--strip-unneeded", "-o", &stripped, &inside])?;
    Ok(root.dir.join(stripped.trim_start_matches('/')))
}

/// `libstd-rust-dev:<arch>`: the standard library for the target, from the
/// same source package as the root's rustc. Done once per root (a stamp).
fn foreign_std(root: &SuiteRoot, parent: &Path, arch: Arch) -> Result<()> {
    let stamp = parent.join(format!("{SUITE}.{arch}"));
    if stamp.is_file() {
        return Ok(());
    }
    let foreign = arch.debian();
    root.run(&["dpkg", "--add-architecture", foreign])?;
    let update: Vec<&str> = ["apt-get"]
        .into_iter()
        .chain(APT_OPTIONS)
        .chain(["-q", "update"])
        .collect();
    root.run(&update)?;
    let std = format!("libstd-rust-dev:{foreign}");
    let install: Vec<&str> = ["apt-get"]
        .into_iter()
        .chain(APT_OPTIONS)
        .chain(["-q", "-y", "--no-install-recommends", "install", &std])
        .collect();
    root.run(&install)?;
    fs::write(&stamp, &std).with_context(|| format!("writing {}", stamp.display()))
}

/// The working tree (tracked and new files, as `git ls-files` sees them)
/// and the vendored crates, copied into the root; the crates again only
/// when Cargo.lock changed.
fn stage(paths: &Paths, root: &SuiteRoot) -> Result<()> {
    let build = root.dir.join(BUILD);
    let src = build.join("src");
    crate::chroot::remove_tree(&src)?;
    mkdir(&src)?;
    let list = paths.vmtest.join("cross").join("files.list");
    let mut ls = Command::new("git");
    ls.current_dir(&paths.root).args([
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ]);
    let output = ls
        .output()
        .with_context(|| format!("running {}", describe(&ls)))?;
    crate::cmd::ensure_success(&ls, &output)?;
    // Deleted but still tracked files would make tar fail.
    let files: Vec<&[u8]> = output
        .stdout
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .filter(|f| {
            paths
                .root
                .join(String::from_utf8_lossy(f).as_ref())
                .is_file()
        })
        .collect();
    fs::write(&list, files.join(&0u8)).with_context(|| format!("writing {}", list.display()))?;
    let mut copy = privileged("sh")?;
    copy.arg("-c")
        .arg("tar -C \"$1\" --null -T \"$2\" -cf - | tar -C \"$3\" -xf -")
        .arg("sh")
        .arg(&paths.root)
        .arg(&list)
        .arg(&src);
    run_inherited(&mut copy)?;

    let lock = fs::read(paths.root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let want = format!("{:016x}", fnv1a(&lock));
    let stamp = paths.vmtest.join("cross").join("vendor.lock");
    if fs::read_to_string(&stamp).is_ok_and(|have| have == want) {
        return Ok(());
    }
    let _ = fs::remove_file(&stamp);
    let vendor = paths.vmtest.join("cross").join("vendor");
    if vendor.exists() {
        fs::remove_dir_all(&vendor).with_context(|| format!("clearing {}", vendor.display()))?;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut vendoring = Command::new(cargo);
    vendoring
        .current_dir(&paths.root)
        .args(["vendor", "--locked", "--versioned-dirs", "--quiet"])
        .arg(&vendor);
    let output = vendoring
        .output()
        .with_context(|| format!("running {}", describe(&vendoring)))?;
    crate::cmd::ensure_success(&vendoring, &output)?;
    let home = paths.vmtest.join("cross").join("config.toml");
    fs::write(
        &home,
        format!(
            "[source.crates-io]\nreplace-with = \"vendored\"\n\
             [source.vendored]\ndirectory = \"/{BUILD}/vendor\"\n"
        ),
    )
    .with_context(|| format!("writing {}", home.display()))?;
    crate::chroot::remove_tree(&build.join("vendor"))?;
    mkdir(&build.join("cargo-home"))?;
    let mut copy = privileged("cp")?;
    copy.arg("-a").arg(&vendor).arg(build.join("vendor"));
    run_inherited(&mut copy)?;
    let mut copy = privileged("cp")?;
    copy.arg(&home)
        .arg(build.join("cargo-home").join("config.toml"));
    run_inherited(&mut copy)?;
    fs::write(&stamp, want).with_context(|| format!("writing {}", stamp.display()))
}

fn mkdir(dir: &PathBuf) -> Result<()> {
    let mut mkdir = privileged("mkdir")?;
    mkdir.arg("-p").arg(dir);
    run_inherited(&mut mkdir)
}

/// A cache key, stable across Rust releases.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A static busybox for `paths.arch`: Debian's busybox-static of that
/// architecture, taken from its package (cached).
pub fn busybox(paths: &Paths) -> Result<PathBuf> {
    let dir = paths.vmtest.join("busybox");
    let busybox = dir.join("usr").join("bin").join("busybox");
    if busybox.is_file() {
        return Ok(busybox);
    }
    let apt = apt::AptRoot::new(
        &paths.apt_dir(SUITE),
        &apt::host_archive(),
        SUITE,
        paths.arch.debian(),
    )?;
    apt.update()?;
    let deb = apt.download("busybox-static", &paths.vmtest.join("busybox-deb"))?;
    let mut unpack = Command::new("dpkg-deb");
    unpack.arg("-x").arg(&deb).arg(&dir);
    run_inherited(&mut unpack)?;
    if !busybox.is_file() {
        bail!("{} holds no usr/bin/busybox", deb.display());
    }
    Ok(busybox)
}
