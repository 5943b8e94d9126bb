//! A minimal Debian root file system per suite (debootstrap), for building
//! code with that suite's compiler and libraries, and running commands in it.
//!
//! All of it needs root; as another user it goes through sudo. No mount
//! outlives the command that needs it: debootstrap runs in a private mount
//! namespace and commands in the root get their /proc from
//! `unshare --mount-proc`, so even a killed run leaves nothing mounted. Trees
//! are still removed with `rm --one-file-system`, and only after checking
//! that nothing is mounted under them.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    apt,
    cmd::{describe, ensure_success},
    preflight::privileged,
};

const DEBOOTSTRAP: &str = "/usr/sbin/debootstrap";
const CHROOT: &str = "/usr/sbin/chroot";

/// A debootstrap'ed root, ready to run commands in.
#[derive(Debug, Clone)]
pub struct SuiteRoot {
    pub dir: PathBuf,
}

/// How [`SuiteRoot::ensure`] got its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Reused,
    Made(Duration),
}

impl SuiteRoot {
    /// The root for `suite` at `<parent>/<suite>` with `include` installed
    /// (debootstrap's minbase plus those packages and their dependencies).
    /// Reused when an earlier run made it with the same package list
    /// (recorded in `<parent>/<suite>.root`), else made afresh; debootstrap's
    /// output goes to `<parent>/<suite>.debootstrap.log`.
    pub fn ensure(
        parent: &Path,
        suite: &str,
        archive: &str,
        include: &BTreeSet<String>,
    ) -> Result<(Self, Origin)> {
        let dir = parent.join(suite);
        let stamp = parent.join(format!("{suite}.root"));
        let want = include.iter().cloned().collect::<Vec<_>>().join(",");
        let root = Self { dir: dir.clone() };
        if dir.is_dir() && fs::read_to_string(&stamp).is_ok_and(|have| have == want) {
            return Ok((root, Origin::Reused));
        }
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        // The stamp goes first: a root without one is never trusted.
        remove_file_if_present(&stamp)?;
        remove_tree(&dir)?;
        let partial = parent.join(format!("{suite}.partial"));
        remove_tree(&partial)?;

        let log = parent.join(format!("{suite}.debootstrap.log"));
        let started = Instant::now();
        let mut command = privileged("unshare")?;
        // A private mount namespace: debootstrap's /proc and /sys mounts in
        // the target die with it, even if it is killed.
        command
            .args(["--mount", "--propagation", "private", DEBOOTSTRAP])
            .args(["--variant=minbase", &format!("--keyring={}", apt::KEYRING)])
            .arg(format!("--include={want}"))
            .arg(suite)
            .arg(&partial)
            .arg(archive);
        if let Err(err) = run_logged(&mut command, &log) {
            // Half a root is 100s of MB and useless.
            let _ = remove_tree(&partial);
            return Err(err);
        }
        fs::rename(&partial, &dir)
            .with_context(|| format!("moving {} to {}", partial.display(), dir.display()))?;
        fs::write(&stamp, &want).with_context(|| format!("writing {}", stamp.display()))?;
        Ok((root, Origin::Made(started.elapsed())))
    }

    /// `args` run inside the root as root, with a /proc of their own (the
    /// kernel's objtool reads it) that is unmounted when they exit, and a
    /// clean environment (cargo's, or a caller's `MAKEFLAGS` or `KBUILD_*`,
    /// must not steer a kernel build). Returns their output; on failure the
    /// error carries its end.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let mut command = privileged("unshare")?;
        command
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .arg("--pid")
            .arg("--fork")
            .arg(format!("--mount-proc={}", self.dir.join("proc").display()))
            .arg(CHROOT)
            .arg(&self.dir)
            .args(args);
        let output = command
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", describe(&command)))?;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        if !output.status.success() {
            bail!(
                "`{}` in {} failed ({}):\n{}",
                args.join(" "),
                self.dir.display(),
                output.status,
                tail(&text, 40)
            );
        }
        Ok(text)
    }
}

/// Runs `command` with stdout and stderr in `log`; on failure the error
/// carries the log's end.
fn run_logged(command: &mut Command, log: &Path) -> Result<()> {
    let file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err_file = file
        .try_clone()
        .with_context(|| format!("opening {} twice", log.display()))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err_file)
        .status()
        .with_context(|| format!("running {}", describe(command)))?;
    if !status.success() {
        let text = fs::read_to_string(log).unwrap_or_default();
        bail!(
            "{} failed ({status}); its log is {}:\n{}",
            describe(command),
            log.display(),
            tail(&text, 20)
        );
    }
    Ok(())
}

/// Removes `path` (a root-owned tree, through sudo if need be) unless
/// something is mounted under it: then it says what, and removes nothing.
pub fn remove_tree(path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .context("reading /proc/self/mountinfo (to check nothing is mounted there)")?;
    let mounted = mounts_under(&mountinfo, path);
    if !mounted.is_empty() {
        bail!(
            "not removing {}: {} mounted there; unmount first",
            path.display(),
            mounted.join(", ")
        );
    }
    let mut command = privileged("rm")?;
    command.args(["-rf", "--one-file-system", "--"]).arg(path);
    let output = command
        .output()
        .with_context(|| format!("running {}", describe(&command)))?;
    ensure_success(&command, &output)?;
    Ok(())
}

fn remove_file_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Mount points at or below `dir`, from /proc/self/mountinfo's text (the
/// fifth field; spaces and the like are octal escapes there).
fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_octal)
        .filter(|point| Path::new(point).starts_with(dir))
        .collect()
}

fn unescape_octal(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)))
            .map(|digits| {
                digits
                    .iter()
                    .fold(0u8, |n, d| n.wrapping_mul(8) + (d - b'0'))
            });
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
35 22 0:5 / /work/t/vmtest/badmod/trixie/proc rw - proc proc rw
36 22 0:6 / /work/t/vmtest/badmod/trixie.partial/dev/pts rw - devpts devpts rw
37 22 0:7 / /work/t/vmtest/badmod/my\\040root/proc rw - proc proc rw
38 22 0:8 / /work/t/vmtest/badmod/trixie2 rw - tmpfs tmpfs rw
";

    #[test]
    fn finds_mounts_below_a_tree_only() {
        let under = |dir: &str| mounts_under(MOUNTINFO, Path::new(dir));
        assert_eq!(
            under("/work/t/vmtest/badmod/trixie"),
            ["/work/t/vmtest/badmod/trixie/proc"]
        );
        assert_eq!(
            under("/work/t/vmtest/badmod/trixie.partial"),
            ["/work/t/vmtest/badmod/trixie.partial/dev/pts"]
        );
        assert_eq!(
            under("/work/t/vmtest/badmod/my root"),
            ["/work/t/vmtest/badmod/my root/proc"]
        );
        // A sibling whose name merely starts the same is not under it.
        assert_eq!(
            under("/work/t/vmtest/badmod/trixie2"),
            ["/work/t/vmtest/badmod/trixie2"]
        );
        assert!(under("/work/t/vmtest/badmod/bookworm").is_empty());
    }

    #[test]
    fn unescapes_octal_only_where_it_is_one() {
        assert_eq!(unescape_octal(r"a\040b\011c"), "a b\tc");
        assert_eq!(unescape_octal(r"no\escape\09"), r"no\escape\09");
        assert_eq!(unescape_octal(r"end\04"), r"end\04");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 3), "");
    }

    #[test]
    fn removing_a_missing_tree_is_fine() {
        let path = std::env::temp_dir().join(format!("xtask-chroot-none-{}", std::process::id()));
        remove_tree(&path).unwrap();
    }
}
