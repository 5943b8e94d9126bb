//! A kernel's Debian headers in a suite root (chroot.rs): which packages hold
//! them, which packages they need installed, and unpacking them.
//!
//! The headers are unpacked rather than installed with apt: on 6.12
//! `linux-headers-<release>` depends on the (100 MB) kernel image, and
//! nothing of the image is needed to build a module. What the headers need
//! to run (their suite's compiler, kbuild's libraries) is read from the
//! packages' dependencies and installed by debootstrap.

use std::{
    collections::BTreeSet,
    fs,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    apt::{AptRoot, Record},
    chroot::SuiteRoot,
    cmd::{describe, ensure_success},
    preflight::privileged,
};

/// Always needed to build a module, and no headers package depends on it.
const BUILD_TOOLS: [&str; 1] = ["make"];

/// What building against one kernel's headers takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `linux-headers-*` and `linux-kbuild-*` packages, unpacked into the root.
    pub unpack: Vec<String>,
    /// Everything they depend on (the compiler, kbuild's libraries), for
    /// debootstrap to install.
    pub install: BTreeSet<String>,
    /// Packages unpacked from the host architecture's apt root instead
    /// (a cross build's kbuild tools).
    pub host_unpack: Vec<String>,
}

/// `plan` for building on this machine for another architecture, whose
/// GNU triplet is `triplet`. Debian's headers are made for that:
/// `.kernelvariables` sets `CROSS_COMPILE` when dpkg's architecture is not
/// the kernel's, and `CC` to the cross gcc of the kernel's version. But
/// kbuild's tools (fixdep, modpost) are binaries of the package's
/// architecture, so kbuild comes from the host's, and the compiler is the
/// cross one (`gcc-16-for-host` -> `gcc-16-aarch64-linux-gnu`).
pub fn for_cross(mut plan: Plan, triplet: &str) -> Plan {
    plan.install = plan
        .install
        .into_iter()
        .map(|package| cross_compiler(&package, triplet).unwrap_or(package))
        .collect();
    let (kbuild, rest) = plan
        .unpack
        .into_iter()
        .partition(|package| package.starts_with("linux-kbuild-"));
    plan.unpack = rest;
    plan.host_unpack = kbuild;
    plan
}

/// `gcc-16-for-host` or `gcc-16` -> `gcc-16-<triplet>`; 6.1's
/// `linux-compiler-gcc-12-arm` (which pulls the native gcc-12) ->
/// `gcc-12-<triplet>`.
fn cross_compiler(package: &str, triplet: &str) -> Option<String> {
    let version = match package.strip_prefix("linux-compiler-gcc-") {
        Some(rest) => rest.split('-').next()?,
        None => package.strip_prefix("gcc-")?,
    };
    let version = version.strip_suffix("-for-host").unwrap_or(version);
    (!version.is_empty() && version.chars().all(|c| c.is_ascii_digit()))
        .then(|| format!("gcc-{version}-{triplet}"))
}

/// What a dependency (one group of alternatives) means for the build.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dependency {
    Unpack(String),
    Install(String),
    /// The kernel image, its modules and Debian's kernel tooling: not needed
    /// to build a module.
    Ignore,
}

fn is_headers(package: &str) -> bool {
    package.starts_with("linux-headers-") || package.starts_with("linux-kbuild-")
}

fn is_kernel_itself(package: &str) -> bool {
    [
        "linux-image-",
        "linux-binary-",
        "linux-modules-",
        "linux-base",
    ]
    .iter()
    .any(|prefix| package.starts_with(prefix))
}

fn classify(alternatives: &[String]) -> Dependency {
    if let Some(headers) = alternatives.iter().find(|name| is_headers(name)) {
        return Dependency::Unpack(headers.clone());
    }
    match alternatives.iter().find(|name| !is_kernel_itself(name)) {
        Some(name) => Dependency::Install(name.clone()),
        None => Dependency::Ignore,
    }
}

/// Follows `linux-headers-<release>`'s dependencies through the headers
/// packages; `show` gives a package's candidate record. The headers must be
/// the kernel's own version: another one would not load (vermagic, symbol
/// versions).
pub fn plan(release: &str, version: &str, show: impl Fn(&str) -> Result<Record>) -> Result<Plan> {
    let top = format!("linux-headers-{release}");
    let mut plan = Plan {
        unpack: vec![top.clone()],
        install: BUILD_TOOLS.iter().map(|tool| (*tool).to_owned()).collect(),
        host_unpack: Vec::new(),
    };
    let mut next = 0;
    while let Some(package) = plan.unpack.get(next).cloned() {
        next += 1;
        let record = show(&package)?;
        if package == top && record.version != version {
            bail!(
                "{top} is at {}, the kernel at {version}: its module would not load",
                record.version
            );
        }
        for alternatives in &record.depends {
            match classify(alternatives) {
                Dependency::Unpack(name) if !plan.unpack.contains(&name) => plan.unpack.push(name),
                Dependency::Install(name) => {
                    plan.install.insert(name);
                }
                Dependency::Unpack(_) | Dependency::Ignore => {}
            }
        }
    }
    Ok(plan)
}

/// Makes the root hold exactly these headers: the kernel files unpacked
/// earlier go, then each package of `plan.unpack` is downloaded into
/// `scratch` and unpacked as dpkg would (keeping the root's /lib -> usr/lib);
/// `plan.host_unpack` comes from `host_apt`.
pub fn unpack(
    root: &SuiteRoot,
    apt: &AptRoot,
    host_apt: &AptRoot,
    plan: &Plan,
    scratch: &Path,
) -> Result<()> {
    for (dir, prefix) in [
        ("usr/src", "linux-"),
        ("usr/lib", "linux-kbuild-"),
        ("usr/lib/modules", ""),
    ] {
        let dir = root.dir.join(dir);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                crate::chroot::remove_tree(&entry.path())?;
            }
        }
    }
    let sources = plan
        .unpack
        .iter()
        .map(|package| (package, apt))
        .chain(plan.host_unpack.iter().map(|package| (package, host_apt)));
    for (package, apt) in sources {
        let deb = apt.download(package, &scratch.join(package))?;
        unpack_deb(&deb, &root.dir).with_context(|| format!("unpacking {package}"))?;
        fs::remove_dir_all(scratch.join(package))
            .with_context(|| format!("removing {}", scratch.join(package).display()))?;
    }
    Ok(())
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x -C ROOT --keep-directory-symlink`, the
/// tar as root.
fn unpack_deb(deb: &Path, root: &Path) -> Result<()> {
    let mut dpkg = Command::new("dpkg-deb");
    dpkg.arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut reader = dpkg
        .spawn()
        .with_context(|| format!("running {}", describe(&dpkg)))?;
    let tarfile = reader
        .stdout
        .take()
        .context("dpkg-deb has no stdout pipe")?;
    let mut tar = privileged("tar")?;
    tar.arg("-x")
        .arg("-C")
        .arg(root)
        .args(["--keep-directory-symlink", "--no-same-owner"])
        .stdin(tarfile);
    let tar_output = tar
        .output()
        .with_context(|| format!("running {}", describe(&tar)))?;
    let dpkg_output = reader
        .wait_with_output()
        .with_context(|| format!("waiting for {}", describe(&dpkg)))?;
    ensure_success(&dpkg, &dpkg_output)?;
    ensure_success(&tar, &tar_output)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apt::parse_record;

    /// The records as `apt-cache show` gave them for the three test kernels
    /// (trimmed to the fields that matter).
    const RECORDS: &str = "\
Package: linux-headers-6.1.0-50-amd64
Version: 6.1.176-1
Depends: linux-headers-6.1.0-50-common (= 6.1.176-1), linux-kbuild-6.1 (>= 6.1.176-1), linux-compiler-gcc-12-x86

Package: linux-headers-6.1.0-50-common
Version: 6.1.176-1

Package: linux-kbuild-6.1
Version: 6.1.176-1
Depends: libc6 (>= 2.34), libelf1 (>= 0.142), libssl3 (>= 3.0.0)

Package: linux-headers-6.12.117+deb13-amd64
Version: 6.12.117-1
Depends: linux-base (>= 4.12~), linux-headers-6.12.117+deb13-common (= 6.12.117-1), linux-image-6.12.117+deb13-amd64 (= 6.12.117-1) | linux-image-6.12.117+deb13-amd64-unsigned (= 6.12.117-1), linux-kbuild-6.12.117+deb13, gcc-14

Package: linux-headers-6.12.117+deb13-common
Version: 6.12.117-1

Package: linux-kbuild-6.12.117+deb13
Version: 6.12.117-1
Depends: libc6 (>= 2.38), libelf1t64 (>= 0.144), libssl3t64 (>= 3.0.0), zlib1g (>= 1:1.2.3.4), pahole

Package: linux-headers-7.2.12+deb14-amd64
Version: 7.2.12-1
Depends: gcc-16-for-host, linux-base (>= 4.12~), linux-base-7.2.12+deb14-amd64 (= 7.2.12-1), linux-headers-7.2.12+deb14-common (= 7.2.12-1), linux-kbuild-7.2.12+deb14

Package: linux-headers-7.2.12+deb14-common
Version: 7.2.12-1

Package: linux-kbuild-7.2.12+deb14
Version: 7.2.12-1
Depends: pahole, libc6 (>= 2.38), libelf1t64 (>= 0.144), libssl3t64 (>= 3.0.0), zlib1g (>= 1:1.2.3.4)
";

    fn show(name: &str) -> Result<Record> {
        let record = RECORDS
            .split("\n\n")
            .find(|text| text.starts_with(&format!("Package: {name}\n")))
            .with_context(|| format!("no record for {name}"))?;
        parse_record(record)
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn bookworm_needs_its_gcc_12_through_the_compiler_package() {
        let plan = plan("6.1.0-50-amd64", "6.1.176-1", show).unwrap();
        assert_eq!(
            plan.unpack,
            [
                "linux-headers-6.1.0-50-amd64",
                "linux-headers-6.1.0-50-common",
                "linux-kbuild-6.1"
            ]
        );
        assert_eq!(
            plan.install,
            names(&[
                "libc6",
                "libelf1",
                "libssl3",
                "linux-compiler-gcc-12-x86",
                "make"
            ])
        );
    }

    #[test]
    fn trixie_leaves_the_kernel_image_out() {
        let plan = plan("6.12.117+deb13-amd64", "6.12.117-1", show).unwrap();
        assert_eq!(
            plan.unpack,
            [
                "linux-headers-6.12.117+deb13-amd64",
                "linux-headers-6.12.117+deb13-common",
                "linux-kbuild-6.12.117+deb13"
            ]
        );
        assert_eq!(
            plan.install,
            names(&[
                "gcc-14",
                "libc6",
                "libelf1t64",
                "libssl3t64",
                "make",
                "pahole",
                "zlib1g"
            ])
        );
    }

    #[test]
    fn testing_takes_gcc_16_for_host() {
        let plan = plan("7.2.12+deb14-amd64", "7.2.12-1", show).unwrap();
        assert_eq!(plan.unpack.len(), 3);
        assert!(plan.install.contains("gcc-16-for-host"));
        assert!(!plan.install.iter().any(|name| name.starts_with("linux-")));
    }

    /// Debian's arm64 headers, built on this amd64 machine: the kbuild
    /// tools from amd64, the compiler the cross one of the kernel's gcc.
    #[test]
    fn an_arm64_module_is_cross_built_with_the_hosts_kbuild() {
        let native = plan("7.2.12+deb14-amd64", "7.2.12-1", show).unwrap();
        let cross = for_cross(native.clone(), "aarch64-linux-gnu");
        assert_eq!(
            cross.unpack,
            [
                "linux-headers-7.2.12+deb14-amd64",
                "linux-headers-7.2.12+deb14-common"
            ]
        );
        assert_eq!(cross.host_unpack, ["linux-kbuild-7.2.12+deb14"]);
        assert!(cross.install.contains("gcc-16-aarch64-linux-gnu"));
        assert!(!cross.install.contains("gcc-16-for-host"));
        assert!(cross.install.contains("libelf1t64") && cross.install.contains("make"));
        assert_eq!(
            cross_compiler("gcc-14", "aarch64-linux-gnu").as_deref(),
            Some("gcc-14-aarch64-linux-gnu")
        );
        assert_eq!(cross_compiler("gcc-for-host", "aarch64-linux-gnu"), None);
        assert_eq!(
            cross_compiler("linux-compiler-gcc-12-arm", "aarch64-linux-gnu").as_deref(),
            Some("gcc-12-aarch64-linux-gnu")
        );
        assert_eq!(cross_compiler("gcc", "aarch64-linux-gnu"), None);
    }

    #[test]
    fn headers_of_another_version_are_refused() {
        let err = plan("6.1.0-50-amd64", "6.1.177-1", show).unwrap_err();
        assert!(err.to_string().contains("would not load"), "{err:#}");
    }

    #[test]
    fn classifies_alternatives() {
        let group = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            classify(&group(&["linux-image-x", "linux-image-x-unsigned"])),
            Dependency::Ignore
        );
        assert_eq!(classify(&group(&["linux-base"])), Dependency::Ignore);
        assert_eq!(
            classify(&group(&["linux-compiler-gcc-12-x86"])),
            Dependency::Install("linux-compiler-gcc-12-x86".to_owned())
        );
        assert_eq!(
            classify(&group(&["linux-kbuild-6.1"])),
            Dependency::Unpack("linux-kbuild-6.1".to_owned())
        );
        assert_eq!(
            classify(&group(&["linux-image-x", "gcc-14"])),
            Dependency::Install("gcc-14".to_owned())
        );
    }
}
