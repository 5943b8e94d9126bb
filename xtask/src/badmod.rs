//! The bad-driver test module (`pfnwatch-testbed/badmod/`), built for every
//! test kernel so the guest can load the one matching the kernel it booted.
//!
//! An out-of-tree module must be built against the kernel's own headers with
//! the compiler that built the kernel, and Debian's headers run kbuild tools
//! linked against their suite's glibc. So each kernel's module is built in a
//! root of its own suite (chroot.rs) holding its headers (headers.rs). Built
//! modules are cached as `target/vmtest/badmod/<release>_<version>_<hash>.ko`,
//! keyed by the kernel's release and package version and by a hash of the
//! module's sources: a cached module needs neither apt nor root.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    thread,
    time::Instant,
};

use anyhow::{Context as _, Result, anyhow};

use crate::{
    apt::{self, AptRoot},
    arch::Arch,
    chroot::{Origin, SuiteRoot},
    headers,
    kernels::Kernel,
    paths::Paths,
    preflight::privileged,
};

/// Bump when the way the module is built changes, so cached modules go stale.
const RECIPE: &str = "pfnwatch-badmod recipe 1";
const NAME: &str = "pfnwatch_badmod";
/// Where the build happens inside a suite root.
const BUILD_DIR: &str = "build/pfnwatch_badmod";

/// One kernel's module, ready for the initramfs.
#[derive(Debug, Clone)]
pub struct Module {
    /// `uname -r` of the kernel it was built for.
    pub release: String,
    pub ko: PathBuf,
}

/// Where the guest finds the module for its kernel (pfnwatch-scenario's
/// guest/module.rs looks there by `uname -r`).
pub fn guest_path(release: &str) -> String {
    format!("lib/pfnwatch/badmod-{release}.ko")
}

fn source_dir(paths: &Paths) -> PathBuf {
    paths.root.join("pfnwatch-testbed").join("badmod")
}

fn work_dir(paths: &Paths) -> PathBuf {
    paths.vmtest.join("badmod")
}

/// Builds (or takes from the cache) the module of each kernel, each suite in
/// a thread of its own: making a root is mostly waiting for dpkg and the
/// network. Results come back in `kernels`' order.
pub fn build_all(paths: &Paths, kernels: &[Kernel]) -> Vec<Result<Module>> {
    let mut by_suite: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, kernel) in kernels.iter().enumerate() {
        by_suite.entry(kernel.spec.suite).or_default().push(index);
    }
    let mut results: Vec<Option<Result<Module>>> = kernels.iter().map(|_| None).collect();
    thread::scope(|scope| {
        let workers: Vec<_> = by_suite
            .into_values()
            .map(|indices| {
                scope.spawn(move || {
                    indices
                        .into_iter()
                        .map(|index| (index, build(paths, &kernels[index])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(done) => {
                    for (index, result) in done {
                        results[index] = Some(result);
                    }
                }
                Err(_) => eprintln!("badmod: a build thread panicked"),
            }
        }
    });
    results
        .into_iter()
        .map(|result| result.unwrap_or_else(|| Err(anyhow!("the build thread panicked"))))
        .collect()
}

/// The module for `kernel`, from the cache or built now.
pub fn build(paths: &Paths, kernel: &Kernel) -> Result<Module> {
    let label = kernel.spec.label;
    let release = kernel.release().to_owned();
    let sources = read_sources(&source_dir(paths))?;
    let work = work_dir(paths);
    let ko = work.join(cache_name(
        &release,
        &kernel.version,
        &source_hash(&sources),
    ));
    if ko.is_file() {
        println!("[{label}] badmod: cached {}", ko.display());
        return Ok(Module { release, ko });
    }
    // Two xtask runs on one target directory (two terminals, two engineers)
    // would debootstrap into the same place: one builds, the other waits and
    // then finds the module cached.
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let lock_path = work.join(format!("{}.lock", kernel.spec.suite));
    let lock = fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        println!(
            "[{label}] badmod: waiting for another xtask building in the {} root",
            kernel.spec.suite
        );
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
    }
    if ko.is_file() {
        println!("[{label}] badmod: cached {}", ko.display());
        return Ok(Module { release, ko });
    }
    let started = Instant::now();
    let built = build_uncached(paths, kernel, &sources)
        .with_context(|| format!("building {NAME} for {release}"))?;
    let partial = ko.with_extension("partial");
    fs::copy(&built, &partial)
        .with_context(|| format!("copying {} to {}", built.display(), partial.display()))?;
    fs::rename(&partial, &ko)
        .with_context(|| format!("moving {} to {}", partial.display(), ko.display()))?;
    remove_stale(&work, &release, &ko)?;
    println!(
        "[{label}] badmod: {} in {:.1} s",
        ko.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(Module { release, ko })
}

/// Root, headers, make; returns the module inside the root.
fn build_uncached(paths: &Paths, kernel: &Kernel, sources: &[Source]) -> Result<PathBuf> {
    let label = kernel.spec.label;
    let suite = kernel.spec.suite;
    let release = kernel.release();
    let work = work_dir(paths);
    let archive = apt::host_archive();
    // The kernel was just resolved through this apt root, so its lists are fresh.
    let apt = AptRoot::new(&paths.apt_dir(suite), &archive, suite, paths.arch.debian())?;
    let plan = headers::plan(release, &kernel.version, |package| apt.show(package))?;
    // Another architecture's module: cross-built with the host's kbuild.
    let host = paths.for_arch(Arch::X86_64);
    let host_apt = AptRoot::new(&host.apt_dir(suite), &archive, suite, Arch::X86_64.debian())?;
    let plan = if paths.arch.is_host() {
        plan
    } else {
        host_apt.update()?;
        headers::for_cross(plan, paths.arch.gnu_triplet())
    };

    let headers_stamp = work.join(format!("{suite}.headers"));
    let (root, origin) = SuiteRoot::ensure(&work, suite, &archive, &plan.install)?;
    match origin {
        Origin::Reused => println!("[{label}] badmod: {suite} root reused"),
        Origin::Made(took) => {
            let _ = fs::remove_file(&headers_stamp);
            println!(
                "[{label}] badmod: {suite} root made in {:.1} s (debootstrap --include={})",
                took.as_secs_f64(),
                plan.install.iter().cloned().collect::<Vec<_>>().join(",")
            );
        }
    }

    let want = format!("{release} {}", kernel.version);
    if fs::read_to_string(&headers_stamp).is_ok_and(|have| have == want) {
        println!("[{label}] badmod: headers {want} already unpacked");
    } else {
        let step = Instant::now();
        let _ = fs::remove_file(&headers_stamp);
        headers::unpack(
            &root,
            &apt,
            &host_apt,
            &plan,
            &work.join("debs").join(suite),
        )?;
        fs::write(&headers_stamp, &want)
            .with_context(|| format!("writing {}", headers_stamp.display()))?;
        println!(
            "[{label}] badmod: headers {want} unpacked in {:.1} s",
            step.elapsed().as_secs_f64()
        );
    }

    let step = Instant::now();
    stage_sources(&root, sources)?;
    root.run(&[
        "make",
        "-C",
        &format!("/usr/src/linux-headers-{release}"),
        &format!("M=/{BUILD_DIR}"),
        "modules",
    ])?;
    println!(
        "[{label}] badmod: make in {:.1} s",
        step.elapsed().as_secs_f64()
    );
    Ok(root.dir.join(BUILD_DIR).join(format!("{NAME}.ko")))
}

/// A fresh build directory in the root holding exactly `sources`.
fn stage_sources(root: &SuiteRoot, sources: &[Source]) -> Result<()> {
    let dir = root.dir.join(BUILD_DIR);
    crate::chroot::remove_tree(&dir)?;
    let mut mkdir = privileged("mkdir")?;
    mkdir.arg("-p").arg(&dir);
    crate::cmd::run_inherited(&mut mkdir)?;
    let mut copy = privileged("cp")?;
    copy.arg("--")
        .args(sources.iter().map(|source| &source.path))
        .arg(&dir);
    crate::cmd::run_inherited(&mut copy)
}

/// A file the module is built from.
#[derive(Debug, Clone)]
struct Source {
    name: String,
    path: PathBuf,
    data: Vec<u8>,
}

/// `Kbuild` and the C files: what kbuild reads (the README and the Makefile
/// for building by hand do not change the module).
fn read_sources(dir: &Path) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == "Kbuild" || name.ends_with(".c") || name.ends_with(".h") {
            let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            sources.push(Source { name, path, data });
        }
    }
    if !sources.iter().any(|source| source.name == "Kbuild") {
        return Err(anyhow!("{} has no Kbuild", dir.display()));
    }
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(sources)
}

/// FNV-1a over the recipe and each file's name and contents: stable across
/// Rust releases (unlike `DefaultHasher`), and a cache key needs no more.
fn source_hash(sources: &[Source]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(RECIPE.as_bytes());
    for source in sources {
        feed(source.name.as_bytes());
        feed(&[0]);
        feed(&(source.data.len() as u64).to_le_bytes());
        feed(&source.data);
    }
    format!("{hash:016x}")
}

fn cache_name(release: &str, version: &str, hash: &str) -> String {
    format!("{release}_{version}_{hash}.ko")
}

/// Drops this release's modules built from other sources or package versions.
fn remove_stale(work: &Path, release: &str, keep: &Path) -> Result<()> {
    let prefix = format!("{release}_");
    for entry in fs::read_dir(work).with_context(|| format!("listing {}", work.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", work.display()))?
            .path();
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with(&prefix) && name.ends_with(".ko") && path != keep {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, data: &[u8]) -> Source {
        Source {
            name: name.to_owned(),
            path: PathBuf::from(name),
            data: data.to_vec(),
        }
    }

    #[test]
    fn the_hash_follows_names_and_contents() {
        let base = [
            source("Kbuild", b"obj-m := x.o\n"),
            source("x.c", b"int x;"),
        ];
        let hash = source_hash(&base);
        assert_eq!(hash.len(), 16);
        assert_eq!(hash, source_hash(&base.clone()));
        let edited = [
            source("Kbuild", b"obj-m := x.o\n"),
            source("x.c", b"int y;"),
        ];
        assert_ne!(hash, source_hash(&edited));
        let renamed = [
            source("Kbuild", b"obj-m := x.o\n"),
            source("y.c", b"int x;"),
        ];
        assert_ne!(hash, source_hash(&renamed));
        // Content cannot slide from one file into the next.
        let shifted = [
            source("Kbuild", b"obj-m := x.o\nx"),
            source(".c", b"int x;"),
        ];
        assert_ne!(hash, source_hash(&shifted));
    }

    #[test]
    fn reads_the_repository_module_sources() {
        let paths = Paths::discover().unwrap();
        let sources = read_sources(&source_dir(&paths)).unwrap();
        let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Kbuild", "pfnwatch_badmod.c"]);
        let kbuild = String::from_utf8_lossy(&sources[0].data);
        assert!(kbuild.contains(&format!("{NAME}.o")), "{kbuild}");
    }

    #[test]
    fn stale_modules_of_the_release_go_and_others_stay() {
        let dir = std::env::temp_dir().join(format!("xtask-badmod-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let keep = dir.join(cache_name(
            "6.1.0-50-amd64",
            "6.1.176-1",
            "00000000000000aa",
        ));
        let old = dir.join(cache_name(
            "6.1.0-50-amd64",
            "6.1.176-1",
            "00000000000000bb",
        ));
        let other = dir.join(cache_name(
            "6.12.117+deb13-amd64",
            "6.12.117-1",
            "0000000000000000",
        ));
        let stamp = dir.join("bookworm.root");
        for path in [&keep, &old, &other, &stamp] {
            fs::write(path, b"x").unwrap();
        }
        remove_stale(&dir, "6.1.0-50-amd64", &keep).unwrap();
        let left: Vec<bool> = [&keep, &old, &other, &stamp]
            .iter()
            .map(|p| p.exists())
            .collect();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(left, [true, false, true, true]);
    }

    #[test]
    fn guest_path_names_the_release() {
        assert_eq!(
            guest_path("6.12.117+deb13-amd64"),
            "lib/pfnwatch/badmod-6.12.117+deb13-amd64.ko"
        );
    }
}
