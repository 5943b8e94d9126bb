//! The guest's root file system: an uncompressed newc cpio archive, assembled here
//! so that no host tool (or root) is needed to create device nodes.

use std::{
    collections::BTreeSet,
    fs,
    io::{self, BufWriter, Write},
    path::Path,
};

use anyhow::{Context as _, Result};
use cpio::newc::Builder;

use crate::{
    badmod::{self, Module},
    build::GuestBinaries,
    kmods::KernelModules,
};

/// Busybox applets linked into /bin: enough to look around in `vm-shell` (and
/// load the bad-driver module by hand) and for the guest init to shell out to
/// if it must.
pub const BUSYBOX_APPLETS: [&str; 8] =
    ["sh", "ls", "cat", "dmesg", "mount", "ps", "insmod", "rmmod"];

/// Empty mount points and scratch directories.
const DIRS: [&str; 7] = ["bin", "proc", "sys", "sys/fs/bpf", "dev", "tmp", "run"];

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File { data: Vec<u8>, perm: u32 },
    Symlink { target: String },
    CharDev { major: u32, minor: u32, perm: u32 },
}

/// An archive being assembled; entries are written in insertion order, parents first.
#[derive(Debug, Default)]
pub struct Initramfs {
    entries: Vec<(String, Node)>,
    dirs: BTreeSet<String>,
}

impl Initramfs {
    /// Adds a directory (and any missing parents).
    pub fn dir(&mut self, path: &str) -> &mut Self {
        let path = normalise(path);
        if path.is_empty() || self.dirs.contains(&path) {
            return self;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.dirs.insert(path.clone());
        self.entries.push((path, Node::Dir));
        self
    }

    pub fn file(&mut self, path: &str, data: Vec<u8>, perm: u32) -> &mut Self {
        self.add(path, Node::File { data, perm })
    }

    pub fn file_from(&mut self, path: &str, source: &Path, perm: u32) -> Result<&mut Self> {
        let data = fs::read(source).with_context(|| format!("reading {}", source.display()))?;
        Ok(self.file(path, data, perm))
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.add(
            path,
            Node::Symlink {
                target: target.to_owned(),
            },
        )
    }

    pub fn char_dev(&mut self, path: &str, major: u32, minor: u32, perm: u32) -> &mut Self {
        self.add(path, Node::CharDev { major, minor, perm })
    }

    fn add(&mut self, path: &str, node: Node) -> &mut Self {
        let path = normalise(path);
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.entries.push((path, node));
        self
    }

    /// Writes the archive (entries, then the trailer) and returns the writer.
    pub fn write<W: Write>(&self, mut out: W) -> io::Result<W> {
        for (index, (path, node)) in self.entries.iter().enumerate() {
            let (mode, nlink, data): (u32, u32, &[u8]) = match node {
                Node::Dir => (S_IFDIR | 0o755, 2, &[]),
                Node::File { data, perm } => (S_IFREG | perm, 1, data),
                Node::Symlink { target } => (S_IFLNK | 0o777, 1, target.as_bytes()),
                Node::CharDev { perm, .. } => (S_IFCHR | perm, 1, &[]),
            };
            let (rdev_major, rdev_minor) = match node {
                Node::CharDev { major, minor, .. } => (*major, *minor),
                _ => (0, 0),
            };
            let size = u32::try_from(data.len()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{path} is too large for newc (4 GiB)"),
                )
            })?;
            // Unique inode numbers and nlink 1 for files: the kernel would treat
            // equal (ino, nlink >= 2) regular files as hard links.
            let ino = u32::try_from(index + 1).unwrap_or(u32::MAX);
            let mut writer = Builder::new(path)
                .ino(ino)
                .mode(mode)
                .nlink(nlink)
                .rdev_major(rdev_major)
                .rdev_minor(rdev_minor)
                .write(out, size);
            writer.write_all(data)?;
            out = writer.finish()?;
        }
        cpio::newc::trailer(out)
    }

    /// Writes the archive to `path` through a temporary file, so an interrupted
    /// run never leaves a truncated initramfs behind.
    pub fn write_to(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // Per process: two runs on one target directory must not write one file.
        let partial = path.with_extension(format!("partial.{}", std::process::id()));
        let file = fs::File::create(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        let mut out = self
            .write(BufWriter::new(file))
            .with_context(|| format!("writing {}", partial.display()))?;
        out.flush()
            .with_context(|| format!("writing {}", partial.display()))?;
        fs::rename(&partial, path)
            .with_context(|| format!("moving {} to {}", partial.display(), path.display()))
    }
}

/// newc names carry no leading '/' (as the kernel's own gen_init_cpio writes them).
fn normalise(path: &str) -> String {
    path.trim_matches('/').to_owned()
}

/// The guest's layout: `/init` is the guest init, the two programs and busybox
/// live in /bin, /dev/console exists so init has stdio from the first
/// instruction, and each test kernel's bad-driver module waits in
/// /lib/pfnwatch/badmod-<release>.ko for the init to pick its own, and the
/// Debian modules it loads in /lib/modules/<release>/.
pub fn guest_initramfs(
    guest: &GuestBinaries,
    busybox: &Path,
    modules: &[Module],
    kernel_modules: &[KernelModules],
) -> Result<Initramfs> {
    let mut initramfs = Initramfs::default();
    for dir in DIRS {
        initramfs.dir(dir);
    }
    initramfs
        .char_dev("dev/console", 5, 1, 0o600)
        .char_dev("dev/null", 1, 3, 0o666);
    initramfs.file_from("init", &guest.init, 0o755)?;
    initramfs.file_from("bin/pfnwatch", &guest.pfnwatch, 0o755)?;
    initramfs.file_from("bin/pfnwatch-scenario", &guest.scenario, 0o755)?;
    initramfs.file_from("bin/busybox", busybox, 0o755)?;
    for applet in BUSYBOX_APPLETS {
        initramfs.symlink(&format!("bin/{applet}"), "busybox");
    }
    for module in modules {
        initramfs.file_from(&badmod::guest_path(&module.release), &module.ko, 0o644)?;
    }
    for kernel in kernel_modules {
        for (path, file) in kernel.files()? {
            initramfs.file_from(&path, &file, 0o644)?;
        }
    }
    Ok(initramfs)
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, io::Read as _, path::PathBuf};

    use cpio::NewcReader;

    use super::*;

    #[derive(Debug)]
    struct ReadBack {
        mode: u32,
        rdev: (u32, u32),
        ino: u32,
        data: Vec<u8>,
    }

    /// Reads an archive back with the cpio crate's reader, in order.
    fn read_back(bytes: &[u8]) -> Vec<(String, ReadBack)> {
        let mut entries = Vec::new();
        let mut input = bytes;
        loop {
            let mut reader = NewcReader::new(input).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            let entry = reader.entry().clone();
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            entries.push((
                entry.name().to_owned(),
                ReadBack {
                    mode: entry.mode(),
                    rdev: (entry.rdev_major(), entry.rdev_minor()),
                    ino: entry.ino(),
                    data,
                },
            ));
            input = reader.finish().unwrap();
        }
        entries
    }

    fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-initramfs-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
        path
    }

    #[test]
    fn guest_layout_reads_back() {
        let guest = GuestBinaries {
            init: scratch_file("init", b"\x7fELF init"),
            pfnwatch: scratch_file("pfnwatch", b"pfnwatch body"),
            scenario: scratch_file("scenario", b"scenario body, odd length"),
            deploy_checks: None,
        };
        let busybox = scratch_file("busybox", b"busybox");
        let modules = [
            Module {
                release: "6.1.0-50-amd64".to_owned(),
                ko: scratch_file("a.ko", b"module for 6.1"),
            },
            Module {
                release: "7.2.12+deb14-amd64".to_owned(),
                ko: scratch_file("b.ko", b"module for 7.2"),
            },
        ];
        let kmods_dir = scratch_file("kmods/kernel/uio.ko", b"uio")
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .to_owned();
        fs::write(kmods_dir.join("modules.dep"), "kernel/uio.ko:\n").unwrap();
        let kernel_modules = [KernelModules {
            release: "6.1.0-50-amd64".to_owned(),
            dir: kmods_dir,
        }];
        let bytes = guest_initramfs(&guest, &busybox, &modules, &kernel_modules)
            .unwrap()
            .write(Vec::new())
            .unwrap();
        let entries = read_back(&bytes);
        let by_name: BTreeMap<_, _> = entries.iter().map(|(n, e)| (n.as_str(), e)).collect();

        let console = by_name["dev/console"];
        assert_eq!(console.mode, 0o020_600);
        assert_eq!(console.rdev, (5, 1));
        let null = by_name["dev/null"];
        assert_eq!(null.mode, 0o020_666);
        assert_eq!(null.rdev, (1, 3));

        let init = by_name["init"];
        assert_eq!(init.mode & 0o170_000, S_IFREG);
        assert_eq!(init.mode & 0o111, 0o111, "/init must be executable");
        assert_eq!(init.data, b"\x7fELF init");
        assert_eq!(
            by_name["bin/pfnwatch-scenario"].data,
            b"scenario body, odd length"
        );

        for applet in BUSYBOX_APPLETS {
            let link = by_name[format!("bin/{applet}").as_str()];
            assert_eq!(link.mode, 0o120_777);
            assert_eq!(link.data, b"busybox");
        }
        let module = by_name["lib/pfnwatch/badmod-6.1.0-50-amd64.ko"];
        assert_eq!(module.mode, S_IFREG | 0o644);
        assert_eq!(module.data, b"module for 6.1");
        assert_eq!(
            by_name["lib/pfnwatch/badmod-7.2.12+deb14-amd64.ko"].data,
            b"module for 7.2"
        );
        assert_eq!(by_name["lib/pfnwatch"].mode, 0o040_755);
        assert_eq!(
            by_name["lib/modules/6.1.0-50-amd64/kernel/uio.ko"].data,
            b"uio"
        );
        assert_eq!(
            by_name["lib/modules/6.1.0-50-amd64/modules.dep"].data,
            b"kernel/uio.ko:\n"
        );

        for dir in ["proc", "sys", "sys/fs/bpf", "dev", "tmp", "run"] {
            assert_eq!(by_name[dir].mode, 0o040_755, "{dir}");
        }

        // Every parent precedes its children, and inode numbers are unique.
        for (index, (name, _)) in entries.iter().enumerate() {
            if let Some((parent, _)) = name.rsplit_once('/') {
                let parent_at = entries.iter().position(|(n, _)| n == parent);
                assert!(
                    parent_at.is_some_and(|at| at < index),
                    "{name} before {parent}"
                );
            }
        }
        let inodes: BTreeSet<_> = entries.iter().map(|(_, e)| e.ino).collect();
        assert_eq!(inodes.len(), entries.len());
        assert!(!entries.iter().any(|(name, _)| name.starts_with('/')));
    }

    #[test]
    fn parents_are_added_once() {
        let mut initramfs = Initramfs::default();
        initramfs
            .file("/a/b/c", b"x".to_vec(), 0o644)
            .dir("a/b")
            .dir("/a/");
        let bytes = initramfs.write(Vec::new()).unwrap();
        let names: Vec<_> = read_back(&bytes).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "a/b", "a/b/c"]);
    }

    #[test]
    fn archive_ends_with_a_trailer_and_is_padded() {
        let mut initramfs = Initramfs::default();
        initramfs.file("odd", b"abc".to_vec(), 0o644);
        let bytes = initramfs.write(Vec::new()).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let tail = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(16)..]).into_owned();
        assert!(tail.contains("TRAILER!!!"), "{tail:?}");
    }
}
