//! The Debian kernel modules the guest loads (pfnwatch-testbed-protocol's
//! `kmods::MODULES`), taken from each kernel's own packages with everything
//! they depend on, decompressed, and cached next to the kernel.
//!
//! Debian's packages ship no modules.dep (depmod makes it at install time),
//! so the chains come from each module's `.modinfo`: `depends=` (what depmod
//! reads) and `softdep=pre:` (what modprobe would load first; the guest has
//! no modprobe). A module the kernel has built in (the package's
//! modules.builtin) needs nothing.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{self, Read as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, anyhow, bail};
use pfnwatch_testbed_protocol::kmods;

use crate::{
    apt::{self, AptRoot},
    cmd::{describe, ensure_success},
    kernels::Kernel,
    paths::Paths,
};

/// One kernel's modules, ready for the initramfs.
#[derive(Debug, Clone)]
pub struct KernelModules {
    pub release: String,
    /// Holds `kmods::dir(release)`'s contents: `kernel/...ko`, modules.dep,
    /// modules.builtin.
    pub dir: PathBuf,
}

impl KernelModules {
    /// (path in the initramfs, file on the host) for every file.
    pub fn files(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        walk(&self.dir, &mut |path| {
            let rel = path.strip_prefix(&self.dir)?.to_string_lossy().into_owned();
            out.push((
                format!("{}/{rel}", kmods::dir(&self.release)),
                path.to_owned(),
            ));
            Ok(())
        })?;
        out.sort();
        Ok(out)
    }
}

/// What a cache was made for: a changed module list makes it again.
const WANTED_FILE: &str = "wanted";

/// The modules of `kernel`, from the cache or its packages.
pub fn fetch(kernel: &Kernel, paths: &Paths) -> Result<KernelModules> {
    let release = kernel.release().to_owned();
    let dir = paths
        .kernel_dir(&kernel.package, &kernel.version)
        .join("modules");
    let wanted = kmods::modules(paths.arch.debian()).join(" ");
    let cached = fs::read_to_string(dir.join(WANTED_FILE)).is_ok_and(|w| w.trim() == wanted);
    if !cached {
        println!(
            "kernel {}: taking modules {wanted} from {} {}",
            kernel.spec.label, kernel.package, kernel.version
        );
        extract(kernel, &dir, paths).with_context(|| format!("kernel modules for {release}"))?;
        fs::write(dir.join(WANTED_FILE), &wanted)
            .with_context(|| format!("writing {}", dir.display()))?;
    }
    Ok(KernelModules {
        release,
        dir: dir.join("lib"),
    })
}

/// Downloads the packages that hold the kernel's modules and writes the
/// wanted ones' closure into `dir`.
fn extract(kernel: &Kernel, dir: &Path, paths: &Paths) -> Result<()> {
    let suite = kernel.spec.suite;
    let apt = AptRoot::new(
        &paths.apt_dir(suite),
        &apt::host_archive(),
        suite,
        paths.arch.debian(),
    )?;
    let image = apt.show(&kernel.package)?;
    if image.version != kernel.version {
        bail!(
            "{suite} now has {} {}, not the {} being tested",
            image.package,
            image.version,
            kernel.version
        );
    }
    let release = kernel.release();
    // Up to 6.12 the image package holds the modules; newer ones split
    // them into linux-modules-<release>, and modules.builtin into
    // linux-base-<release>.
    let carriers: Vec<String> = std::iter::once(image.package.clone())
        .chain(
            image
                .required()
                .filter(|dep| {
                    *dep == format!("linux-modules-{release}")
                        || *dep == format!("linux-base-{release}")
                })
                .map(str::to_owned),
        )
        .collect();

    let partial = dir.with_extension("partial");
    if partial.exists() {
        fs::remove_dir_all(&partial).with_context(|| format!("clearing {}", partial.display()))?;
    }
    let all = partial.join("all");
    let out = partial.join("lib");
    fs::create_dir_all(&all).with_context(|| format!("creating {}", all.display()))?;
    let debs = paths.apt_dir(suite).join("debs");
    for package in &carriers {
        let deb = apt.download(package, &debs)?;
        unpack_modules(&deb, release, &all, &out)
            .with_context(|| format!("reading {}", deb.display()))?;
        // Up to ~110 MB each; only the modules' closure is kept.
        fs::remove_file(&deb).with_context(|| format!("removing {}", deb.display()))?;
    }
    let builtin = fs::read_to_string(out.join(kmods::BUILTIN_FILE))
        .with_context(|| format!("no {} in {}", kmods::BUILTIN_FILE, carriers.join(", ")))?;
    let package = Package::index(&all, &builtin)?;
    let closure = package.closure(kmods::modules(paths.arch.debian()))?;
    for module in closure.order() {
        let rel = package
            .files
            .get(&module)
            .with_context(|| format!("no module {module}"))?;
        let bytes = package.read(&module)?;
        let to = out.join(plain(rel));
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&to, bytes).with_context(|| format!("writing {}", to.display()))?;
    }
    fs::write(
        out.join(kmods::DEP_FILE),
        closure.modules_dep(&package.files),
    )
    .context("writing modules.dep")?;
    fs::remove_dir_all(&all).with_context(|| format!("clearing {}", all.display()))?;
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    fs::rename(&partial, dir)
        .with_context(|| format!("moving {} to {}", partial.display(), dir.display()))
}

/// `kernel/x/y.ko.xz` -> `kernel/x/y.ko`: the guest gets them decompressed.
fn plain(rel: &str) -> String {
    match rel.find(".ko") {
        Some(at) => format!("{}.ko", &rel[..at]),
        None => rel.to_owned(),
    }
}

/// Streams the package's data tarball: every module file goes to `all`
/// (as packed, by its path under the release's `kernel/`), and
/// modules.builtin to `out`.
fn unpack_modules(deb: &Path, release: &str, all: &Path, out: &Path) -> Result<()> {
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
    for entry in archive.entries().context("reading the data tarball")? {
        let mut entry = entry.context("reading a tarball entry")?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some(to) = module_file(&path, release, all, out) else {
            continue;
        };
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut file =
            fs::File::create(&to).with_context(|| format!("creating {}", to.display()))?;
        io::copy(&mut entry, &mut file).with_context(|| format!("writing {}", to.display()))?;
    }
    // Read to the end so dpkg-deb exits cleanly instead of dying of SIGPIPE.
    io::copy(&mut archive.into_inner(), &mut io::sink()).context("draining dpkg-deb")?;
    let output = child
        .wait_with_output()
        .with_context(|| format!("waiting for {}", describe(&command)))?;
    ensure_success(&command, &output)
}

/// Where a package file goes, if it is one we keep: `./lib/modules/<release>/`
/// (6.1) or `./usr/lib/modules/<release>/` (6.12 on).
fn module_file(path: &str, release: &str, all: &Path, out: &Path) -> Option<PathBuf> {
    let path = path.trim_start_matches("./").trim_start_matches('/');
    let path = path.strip_prefix("usr/").unwrap_or(path);
    let rest = path.strip_prefix(&format!("lib/modules/{release}/"))?;
    if rest == kmods::BUILTIN_FILE {
        return Some(out.join(rest));
    }
    let rel = rest.strip_prefix("kernel/")?;
    let is_module = [".ko", ".ko.xz", ".ko.zst"]
        .iter()
        .any(|ext| rel.ends_with(ext));
    (is_module && !rel.contains("..")).then(|| all.join(rest))
}

/// Every module a package has, by name.
struct Package {
    /// Where `all` is.
    root: PathBuf,
    /// Name -> path under the release directory (`kernel/...`).
    files: BTreeMap<String, String>,
    /// Names of the built-in modules.
    builtin: BTreeSet<String>,
}

impl Package {
    fn index(all: &Path, builtin: &str) -> Result<Package> {
        let mut files = BTreeMap::new();
        walk(all, &mut |path| {
            let rel = path.strip_prefix(all)?.to_string_lossy().into_owned();
            if let Some(name) = kmods::name_of(&rel) {
                files.insert(name, rel);
            }
            Ok(())
        })?;
        if files.is_empty() {
            bail!("the packages hold no modules");
        }
        Ok(Package {
            root: all.to_owned(),
            files,
            builtin: builtin.lines().filter_map(kmods::name_of).collect(),
        })
    }

    /// The module's bytes, decompressed.
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let rel = self
            .files
            .get(name)
            .with_context(|| format!("no module {name}"))?;
        let path = self.root.join(rel);
        let raw = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        decompress(rel, raw).with_context(|| format!("decompressing {rel}"))
    }

    /// The wanted modules and all they need, or why not.
    fn closure(&self, wanted: &[&str]) -> Result<Closure> {
        let mut closure = Closure::default();
        let mut missing = Vec::new();
        for name in wanted {
            if self.files.contains_key(*name) {
                closure.roots.push((*name).to_owned());
                self.add(name, &mut closure)?;
            } else if !self.builtin.contains(*name) {
                missing.push(*name);
            }
        }
        if !missing.is_empty() {
            bail!(
                "the packages have no module {} (and the kernel has none built in)",
                missing.join(", ")
            );
        }
        Ok(closure)
    }

    fn add(&self, name: &str, closure: &mut Closure) -> Result<()> {
        if closure.needs.contains_key(name) {
            return Ok(());
        }
        let info = ModInfo::parse(&self.read(name)?).with_context(|| format!("module {name}"))?;
        let mut needs = Vec::new();
        for dep in &info.depends {
            if !self.files.contains_key(dep) {
                bail!("{name} depends on {dep}, which the packages do not have");
            }
            needs.push(dep.clone());
        }
        // Best effort, as modprobe: a soft dependency nothing provides
        // (or the kernel has built in) is left out.
        for alias in &info.softdep_pre {
            if let Some(provider) = self.provider(alias)? {
                needs.push(provider);
            }
        }
        closure.needs.insert(name.to_owned(), needs.clone());
        for dep in needs {
            self.add(&dep, closure)?;
        }
        Ok(())
    }

    /// The module that answers to `alias` (a name, or `crypto-crc32c` as
    /// ext4's softdep says): among the modules whose name holds the alias's
    /// last word, the first whose `alias=` lines list it.
    fn provider(&self, alias: &str) -> Result<Option<String>> {
        let alias_name = alias.replace('-', "_");
        if self.files.contains_key(&alias_name) {
            return Ok(Some(alias_name));
        }
        let word = alias_name.rsplit('_').next().unwrap_or_default();
        for name in self.files.keys().filter(|n| n.contains(word)) {
            let info =
                ModInfo::parse(&self.read(name)?).with_context(|| format!("module {name}"))?;
            if info.aliases.iter().any(|a| a == alias) {
                return Ok(Some(name.clone()));
            }
        }
        Ok(None)
    }
}

/// Modules and what each needs first.
#[derive(Debug, Default)]
struct Closure {
    roots: Vec<String>,
    needs: BTreeMap<String, Vec<String>>,
}

impl Closure {
    /// Every module, each after all it needs.
    fn order(&self) -> Vec<String> {
        let mut order = Vec::new();
        for root in &self.roots {
            self.visit(root, &mut order);
        }
        order
    }

    fn visit(&self, name: &str, order: &mut Vec<String>) {
        if order.iter().any(|n| n == name) {
            return;
        }
        for dep in self.needs.get(name).into_iter().flatten() {
            self.visit(dep, order);
        }
        order.push(name.to_owned());
    }

    /// depmod's modules.dep: each module, then everything it needs in
    /// reverse load order.
    fn modules_dep(&self, files: &BTreeMap<String, String>) -> String {
        let path = |name: &str| plain(files.get(name).map_or(name, String::as_str));
        let mut text = String::new();
        for name in self.order() {
            let mut deps = Vec::new();
            for dep in self.needs.get(&name).into_iter().flatten() {
                self.visit(dep, &mut deps);
            }
            text.push_str(&path(&name));
            text.push(':');
            for dep in deps.iter().rev() {
                text.push(' ');
                text.push_str(&path(dep));
            }
            text.push('\n');
        }
        text
    }
}

/// What a module's `.modinfo` section says about loading it.
#[derive(Debug, Default, PartialEq, Eq)]
struct ModInfo {
    depends: Vec<String>,
    softdep_pre: Vec<String>,
    aliases: Vec<String>,
}

impl ModInfo {
    fn parse(elf: &[u8]) -> Result<ModInfo> {
        use object::{Object as _, ObjectSection as _};
        let file = object::File::parse(elf).context("not an ELF object")?;
        let section = file
            .section_by_name(".modinfo")
            .context("no .modinfo section")?;
        let data = section.data().context("reading .modinfo")?;
        Ok(ModInfo::from_modinfo(data))
    }

    /// NUL-separated `key=value` strings.
    fn from_modinfo(data: &[u8]) -> ModInfo {
        let mut info = ModInfo::default();
        for item in data.split(|b| *b == 0) {
            let item = String::from_utf8_lossy(item);
            let Some((key, value)) = item.split_once('=') else {
                continue;
            };
            match key {
                "depends" => info.depends.extend(
                    value
                        .split(',')
                        .filter(|d| !d.is_empty())
                        .map(|d| d.replace('-', "_")),
                ),
                // "pre: a b post: c"
                "softdep" => {
                    let mut pre = false;
                    for word in value.split_whitespace() {
                        match word {
                            "pre:" => pre = true,
                            "post:" => pre = false,
                            _ if pre => info.softdep_pre.push(word.to_owned()),
                            _ => {}
                        }
                    }
                }
                "alias" => info.aliases.push(value.to_owned()),
                _ => {}
            }
        }
        info
    }
}

/// The module as the kernel loads it, whatever the package compressed it with.
pub fn decompress(rel: &str, raw: Vec<u8>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if rel.ends_with(".ko.xz") {
        xz2::read::XzDecoder::new(raw.as_slice()).read_to_end(&mut out)?;
    } else if rel.ends_with(".ko.zst") {
        ruzstd::decoding::StreamingDecoder::new(raw.as_slice())
            .map_err(|e| anyhow!("{e:?}"))?
            .read_to_end(&mut out)?;
    } else {
        return Ok(raw);
    }
    Ok(out)
}

fn walk(dir: &Path, each: &mut dyn FnMut(&Path) -> Result<()>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, each)?;
        } else {
            each(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn reads_depends_softdeps_and_aliases() {
        let info = ModInfo::from_modinfo(
            b"license=GPL\0depends=jbd2,mbcache,crc16\0softdep=pre: crypto-crc32c post: x\0\
              alias=fs-ext4\0alias=crypto-crc32c\0depends=\0",
        );
        assert_eq!(info.depends, ["jbd2", "mbcache", "crc16"]);
        assert_eq!(info.softdep_pre, ["crypto-crc32c"]);
        assert_eq!(info.aliases, ["fs-ext4", "crypto-crc32c"]);
    }

    #[test]
    fn keeps_module_files_of_both_layouts() {
        let (all, out) = (Path::new("/a"), Path::new("/o"));
        let r = "6.12.117+deb13-amd64";
        assert_eq!(
            module_file(
                "./usr/lib/modules/6.12.117+deb13-amd64/kernel/fs/ext4/ext4.ko.xz",
                r,
                all,
                out
            ),
            Some(PathBuf::from("/a/kernel/fs/ext4/ext4.ko.xz"))
        );
        assert_eq!(
            module_file(
                "./lib/modules/6.12.117+deb13-amd64/modules.builtin",
                r,
                all,
                out
            ),
            Some(PathBuf::from("/o/modules.builtin"))
        );
        assert_eq!(
            module_file(
                "./lib/modules/6.1.0-50-amd64/kernel/fs/ext4/ext4.ko",
                r,
                all,
                out
            ),
            None
        );
        assert_eq!(
            module_file(
                "./usr/lib/modules/6.12.117+deb13-amd64/vmlinuz",
                r,
                all,
                out
            ),
            None
        );
    }

    #[test]
    fn orders_dependencies_first_and_writes_depmod_lines() {
        let mut c = Closure {
            roots: vec!["bochs".into(), "uio".into()],
            ..Closure::default()
        };
        c.needs
            .insert("bochs".into(), vec!["helper".into(), "drm".into()]);
        c.needs.insert("helper".into(), vec!["drm".into()]);
        c.needs.insert("drm".into(), vec![]);
        c.needs.insert("uio".into(), vec![]);
        assert_eq!(c.order(), ["drm", "helper", "bochs", "uio"]);
        let files: BTreeMap<String, String> = [
            ("bochs", "kernel/tiny/bochs.ko.xz"),
            ("helper", "kernel/helper.ko.xz"),
            ("drm", "kernel/drm.ko.xz"),
            ("uio", "kernel/uio.ko"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        let dep = c.modules_dep(&files);
        assert_eq!(
            dep,
            "kernel/drm.ko:\nkernel/helper.ko: kernel/drm.ko\n\
             kernel/tiny/bochs.ko: kernel/helper.ko kernel/drm.ko\nkernel/uio.ko:\n"
        );
        // The guest's reading of it loads drm, then helper, then bochs.
        let parsed = kmods::parse_dep(&dep);
        assert_eq!(parsed[2].1, ["kernel/drm.ko", "kernel/helper.ko"]);
    }

    #[test]
    fn decompresses_xz_and_passes_plain_modules_through() {
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(b"\x7fELF module").unwrap();
        let packed = enc.finish().unwrap();
        assert_eq!(decompress("a.ko.xz", packed).unwrap(), b"\x7fELF module");
        assert_eq!(decompress("a.ko", b"raw".to_vec()).unwrap(), b"raw");
        assert!(decompress("a.ko.zst", b"not zstd".to_vec()).is_err());
        assert_eq!(plain("kernel/a/b.ko.zst"), "kernel/a/b.ko");
    }
}
