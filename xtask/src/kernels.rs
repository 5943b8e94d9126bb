//! Which Debian kernels the VM tests boot, and fetching their vmlinuz.
//!
//! The version is re-resolved every run (Debian moves `linux-image-amd64` with
//! each point release); the extracted files are cached per package and version.

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    apt::{self, AptRoot},
    cmd::{describe, ensure_success},
    paths::Paths,
};

/// A kernel line the tests care about and the suite that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSpec {
    /// Name on the command line and in output (`[6.12] PASS ...`).
    pub label: &'static str,
    pub suite: &'static str,
    /// The resolved version must start with this, so a suite that moved on to
    /// another kernel line is an error rather than a silent change of subject.
    pub version_prefix: Option<&'static str>,
}

pub const KERNELS: [KernelSpec; 3] = [
    KernelSpec {
        label: "6.1",
        suite: "bookworm",
        version_prefix: Some("6.1."),
    },
    KernelSpec {
        label: "6.12",
        suite: "trixie",
        version_prefix: Some("6.12."),
    },
    KernelSpec {
        label: "newest",
        suite: "testing",
        version_prefix: None,
    },
];

pub fn newest() -> KernelSpec {
    KERNELS[KERNELS.len() - 1]
}

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub spec: KernelSpec,
    pub package: String,
    pub version: String,
    /// The compressed kernel image. Its build config, when the packages ship one,
    /// is cached next to it as `config`.
    pub vmlinuz: PathBuf,
}

impl Kernel {
    /// `uname -r` of this kernel: the image package's name without `linux-image-`.
    pub fn release(&self) -> &str {
        self.package.trim_start_matches("linux-image-")
    }

    fn describe(&self) -> String {
        format!(
            "kernel {}: {} {} ({})",
            self.spec.label, self.package, self.version, self.spec.suite
        )
    }
}

/// Resolves the suite's current kernel and makes sure its vmlinuz is on disk.
/// If apt or the download fails and an earlier run cached a kernel for this
/// suite, that one is used with a warning (offline runs keep working).
pub fn fetch(spec: KernelSpec, paths: &Paths) -> Result<Kernel> {
    let kernel = match fetch_current(spec, paths) {
        Ok(kernel) => {
            remember(spec, &kernel, paths)?;
            kernel
        }
        Err(err) => match cached(spec, paths) {
            Some(kernel) => {
                println!(
                    "warning: kernel {}: {err:#}; using the cached {} {}",
                    spec.label, kernel.package, kernel.version
                );
                kernel
            }
            None => return Err(err),
        },
    };
    println!("{}", kernel.describe());
    Ok(kernel)
}

fn fetch_current(spec: KernelSpec, paths: &Paths) -> Result<Kernel> {
    let apt = AptRoot::new(
        &paths.apt_dir(spec.suite),
        &apt::host_archive(),
        spec.suite,
        paths.arch.debian(),
    )?;
    apt.update()?;
    let meta_package = format!("linux-image-{}", paths.arch.debian());
    let meta = apt.show(&meta_package)?;
    let image_name = meta
        .required()
        .find(|dep| dep.starts_with("linux-image-"))
        .with_context(|| {
            format!(
                "{}'s {meta_package} {} depends on no linux-image-* package",
                spec.suite, meta.version
            )
        })?;
    let image = apt.show(image_name)?;
    if let Some(prefix) = spec.version_prefix
        && !image.version.starts_with(prefix)
    {
        bail!(
            "{} now carries {} {}, not a {} kernel",
            spec.suite,
            image.package,
            image.version,
            spec.label
        );
    }

    let dir = paths.kernel_dir(&image.package, &image.version);
    if let Some(kernel) = load(spec, &image.package, &image.version, &dir) {
        return Ok(kernel);
    }
    println!(
        "kernel {}: downloading {} {}",
        spec.label, image.package, image.version
    );
    extract_from_packages(&apt, &image, &dir, &paths.apt_dir(spec.suite).join("debs"))?;
    load(spec, &image.package, &image.version, &dir)
        .with_context(|| format!("no vmlinuz in {} after extraction", dir.display()))
}

/// Extracts vmlinuz and config into `dir`, following the image package's
/// dependencies when it is only a shell (newer kernels ship vmlinuz in
/// `linux-binary-<ver>` and the config in `linux-base-<ver>`).
fn extract_from_packages(
    apt: &AptRoot,
    image: &apt::Record,
    dir: &Path,
    debs: &Path,
) -> Result<()> {
    // Not `with_extension`: the version's dots would make it replace part of the name.
    let mut partial = dir.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    if partial.exists() {
        fs::remove_dir_all(&partial).with_context(|| format!("clearing {}", partial.display()))?;
    }
    fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;

    let release = image.package.trim_start_matches("linux-image-");
    let binary_carriers = image
        .required()
        .filter(|dep| dep.starts_with("linux-binary-") || dep.starts_with("linux-image-"));
    let config_carrier = format!("linux-base-{release}");
    let config_carriers = image.required().filter(|dep| *dep == config_carrier);
    let candidates: Vec<&str> = std::iter::once(image.package.as_str())
        .chain(binary_carriers)
        .chain(config_carriers)
        .collect();

    let mut found = Found::default();
    for package in candidates {
        let wanted = if package == image.package {
            true
        } else if package == config_carrier {
            found.config.is_none()
        } else {
            found.vmlinuz.is_none()
        };
        if !wanted {
            continue;
        }
        let deb = apt.download(package, debs)?;
        let from_this = extract_kernel_files(&deb, &partial)
            .with_context(|| format!("extracting {}", deb.display()))?;
        found.vmlinuz = found.vmlinuz.or(from_this.vmlinuz);
        found.config = found.config.or(from_this.config);
        // The debs are large (up to ~110 MB) and only vmlinuz is kept.
        fs::remove_file(&deb).with_context(|| format!("removing {}", deb.display()))?;
    }
    if found.vmlinuz.is_none() {
        bail!(
            "neither {} nor its linux-binary-*/linux-image-* dependencies contain a vmlinuz",
            image.package
        );
    }
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    fs::rename(&partial, dir)
        .with_context(|| format!("moving {} to {}", partial.display(), dir.display()))
}

#[derive(Debug, Default)]
struct Found {
    vmlinuz: Option<PathBuf>,
    config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KernelFile {
    Vmlinuz,
    Config,
}

impl KernelFile {
    fn cache_name(self) -> &'static str {
        match self {
            KernelFile::Vmlinuz => "vmlinuz",
            KernelFile::Config => "config",
        }
    }
}

/// Recognises both layouts: `./boot/vmlinuz-<ver>` and `./boot/config-<ver>` (up
/// to 6.12) and `./usr/lib/modules/<ver>/{vmlinuz,config}` (newer packages).
fn classify(path: &str) -> Option<KernelFile> {
    let path = path.trim_start_matches("./").trim_start_matches('/');
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["boot", name] if name.starts_with("vmlinuz-") || *name == "vmlinuz" => {
            Some(KernelFile::Vmlinuz)
        }
        ["boot", name] if name.starts_with("config-") => Some(KernelFile::Config),
        ["usr", "lib", "modules", _, "vmlinuz"] | ["lib", "modules", _, "vmlinuz"] => {
            Some(KernelFile::Vmlinuz)
        }
        ["usr", "lib", "modules", _, "config"] | ["lib", "modules", _, "config"] => {
            Some(KernelFile::Config)
        }
        _ => None,
    }
}

/// Streams the package's data tarball and writes only the kernel files into `dest`.
fn extract_kernel_files(deb: &Path, dest: &Path) -> Result<Found> {
    let mut command = Command::new("dpkg-deb");
    command
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("running {}", describe(&command)))?;
    let stdout = child.stdout.take().context("dpkg-deb has no stdout pipe")?;
    let mut archive = tar::Archive::new(stdout);
    let mut found = Found::default();
    for entry in archive.entries().context("reading the data tarball")? {
        let mut entry = entry.context("reading a tarball entry")?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().context("reading an entry's path")?;
        let Some(kind) = classify(&path.to_string_lossy()) else {
            continue;
        };
        let out_path = dest.join(kind.cache_name());
        let mut out = fs::File::create(&out_path)
            .with_context(|| format!("creating {}", out_path.display()))?;
        io::copy(&mut entry, &mut out)
            .with_context(|| format!("writing {}", out_path.display()))?;
        let slot = match kind {
            KernelFile::Vmlinuz => &mut found.vmlinuz,
            KernelFile::Config => &mut found.config,
        };
        *slot = Some(out_path);
    }
    // Read to the end so dpkg-deb exits cleanly instead of dying of SIGPIPE.
    io::copy(&mut archive.into_inner(), &mut io::sink()).context("draining dpkg-deb")?;
    let output = child
        .wait_with_output()
        .with_context(|| format!("waiting for {}", describe(&command)))?;
    ensure_success(&command, &output)?;
    Ok(found)
}

fn load(spec: KernelSpec, package: &str, version: &str, dir: &Path) -> Option<Kernel> {
    let vmlinuz = dir.join(KernelFile::Vmlinuz.cache_name());
    if !vmlinuz.is_file() {
        return None;
    }
    Some(Kernel {
        spec,
        package: package.to_owned(),
        version: version.to_owned(),
        vmlinuz,
    })
}

/// Records which kernel the suite resolved to last, for offline fallback.
fn remember(spec: KernelSpec, kernel: &Kernel, paths: &Paths) -> Result<()> {
    let path = paths.last_kernel_file(spec.suite);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(&path, format!("{} {}\n", kernel.package, kernel.version))
        .with_context(|| format!("writing {}", path.display()))
}

fn cached(spec: KernelSpec, paths: &Paths) -> Option<Kernel> {
    let text = fs::read_to_string(paths.last_kernel_file(spec.suite)).ok()?;
    let (package, version) = text.trim().split_once(' ')?;
    load(spec, package, version, &paths.kernel_dir(package, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_both_package_layouts() {
        assert_eq!(
            classify("./boot/vmlinuz-6.1.0-50-amd64"),
            Some(KernelFile::Vmlinuz)
        );
        assert_eq!(
            classify("./boot/config-6.12.117+deb13-amd64"),
            Some(KernelFile::Config)
        );
        assert_eq!(
            classify("./usr/lib/modules/7.2.12+deb14-amd64/vmlinuz"),
            Some(KernelFile::Vmlinuz)
        );
        assert_eq!(
            classify("./usr/lib/modules/7.2.12+deb14-amd64/config"),
            Some(KernelFile::Config)
        );
        assert_eq!(classify("./boot/System.map-6.1.0-50-amd64"), None);
        assert_eq!(
            classify("./usr/lib/modules/6.12.117+deb13-amd64/kernel/mm/vmlinuz"),
            None
        );
        assert_eq!(
            classify("./usr/share/doc/linux-image-6.1.0-50-amd64/config"),
            None
        );
    }

    #[test]
    fn labels_map_to_suites() {
        let by_label = |label: &str| KERNELS.iter().find(|spec| spec.label == label).copied();
        assert_eq!(by_label("6.1").map(|spec| spec.suite), Some("bookworm"));
        assert_eq!(by_label("6.12").map(|spec| spec.suite), Some("trixie"));
        assert_eq!(newest().suite, "testing");
        assert_eq!(newest().version_prefix, None);
    }
}
