//! cgroup ids to paths and container ids. On cgroup v2 a cgroup's id is the
//! inode number of its directory, so a walk of the hierarchy maps them.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Cgroups {
    root: Option<PathBuf>,
    paths: HashMap<u64, String>,
    walked_at: Option<Instant>,
}

const REWALK_EVERY: Duration = Duration::from_secs(10);

impl Cgroups {
    /// Finds the cgroup v2 mount in /proc/self/mountinfo.
    pub fn discover() -> Cgroups {
        let root = std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|text| cgroup2_mount(&text));
        Cgroups::at(root)
    }

    pub fn at(root: Option<PathBuf>) -> Cgroups {
        Cgroups {
            root,
            paths: HashMap::new(),
            walked_at: None,
        }
    }

    /// The cgroup's path below the cgroup2 root ("/" for the root).
    pub fn path(&mut self, id: u64) -> Option<String> {
        if !self.paths.contains_key(&id)
            && self.walked_at.is_none_or(|t| t.elapsed() > REWALK_EVERY)
        {
            self.walk();
        }
        self.paths.get(&id).cloned()
    }

    fn walk(&mut self) {
        self.walked_at = Some(Instant::now());
        let Some(root) = self.root.clone() else {
            return;
        };
        self.paths.clear();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            let rel = dir.strip_prefix(&root).unwrap_or(Path::new(""));
            self.paths.insert(meta.ino(), format!("/{}", rel.display()));
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
}

fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // "... mount_point options - fstype source super_options"
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// The container id in a cgroup path, as docker, containerd, CRI-O, podman
/// and Kubernetes name them: a 64-hex-digit id, bare or wrapped
/// ("docker-<id>.scope", "cri-containerd-<id>.scope", "crio-<id>", "libpod-<id>").
pub fn container_id(path: &str) -> Option<String> {
    path.rsplit('/').find_map(|part| {
        let part = part.strip_suffix(".scope").unwrap_or(part);
        let id = part.rsplit(['-', ':']).next()?;
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c0a6c7b2e8d9f0a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef";

    #[test]
    fn finds_container_ids_in_runtime_paths() {
        for path in [
            format!("/system.slice/docker-{ID}.scope"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{ID}.scope"
            ),
            format!("/kubepods/besteffort/pod0f4c/{ID}"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/kubepods.slice/crio-{ID}.scope"),
            format!("/docker/{ID}"),
        ] {
            assert_eq!(container_id(&path).as_deref(), Some(ID), "{path}");
        }
        assert_eq!(
            container_id("/user.slice/user-0.slice/session-3.scope"),
            None
        );
        assert_eq!(container_id("/"), None);
        assert_eq!(container_id(&format!("/docker-{}.scope", &ID[1..])), None);
    }

    #[test]
    fn reads_the_cgroup2_mount_point() {
        let info = "\
24 30 0:22 / /sys rw,nosuid - sysfs sysfs rw
33 24 0:28 / /sys/fs/cgroup rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate
";
        assert_eq!(cgroup2_mount(info), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(
            cgroup2_mount("24 30 0:22 / /sys rw - sysfs sysfs rw\n"),
            None
        );
    }

    #[test]
    fn maps_directory_inodes_to_paths() {
        let root = std::env::temp_dir().join(format!("pfnwatch-cg-{}", std::process::id()));
        let leaf = root.join("system.slice").join(format!("docker-{ID}.scope"));
        std::fs::create_dir_all(&leaf).unwrap();
        let ino = std::fs::metadata(&leaf).unwrap().ino();
        let mut cg = Cgroups::at(Some(root.clone()));
        let path = cg.path(ino).unwrap();
        assert_eq!(path, format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(
            cg.path(std::fs::metadata(&root).unwrap().ino()).as_deref(),
            Some("/")
        );
        assert_eq!(Cgroups::at(None).path(ino), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
