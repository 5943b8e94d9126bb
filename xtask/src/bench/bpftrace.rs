//! bpftrace for the bench's peer column: Debian's package (trixie's, for
//! every kernel booted), debootstrap'ed into a root of its own once and
//! cached in `target/vmtest/peer/`. The guest has no Debian root, so the
//! binary, its dynamic loader and the libraries ldd names go into the
//! bench's initramfs under [`GUEST_DIR`], and the guest runs
//! `GUEST_DIR/ld.so --library-path GUEST_DIR/lib GUEST_DIR/bpftrace`.

use std::{collections::BTreeSet, path::PathBuf};

use anyhow::{Context as _, Result, bail};
use pfnwatch_testbed_protocol::bench::BPFTRACE_DIR as GUEST_DIR;

use crate::{apt, chroot::SuiteRoot, paths::Paths};

const SUITE: &str = "trixie";

/// (path in the initramfs, file on the host) for bpftrace and what it
/// loads; made or reused.
pub fn files(paths: &Paths) -> Result<Vec<(String, PathBuf)>> {
    let parent = paths.vmtest.join("peer");
    let include = BTreeSet::from(["bpftrace".to_owned()]);
    let (root, _) = SuiteRoot::ensure(&parent, SUITE, &apt::host_archive(), &include)
        .context("making the bpftrace root")?;
    // Each library under the name the binary asks for (ldd's left side),
    // from its real path inside the root: the root's symlinks are absolute
    // and would point into the host's own /lib if followed from outside.
    let listed = root.run(&[
        "sh",
        "-c",
        "echo bpftrace $(readlink -f /usr/bin/bpftrace); \
         ldd /usr/bin/bpftrace | while read -r name arrow path rest; do \
           if [ \"$arrow\" = '=>' ]; then echo \"$name $(readlink -f \"$path\")\"; \
           else case $name in /*) echo \"$name $(readlink -f \"$name\")\";; esac; fi; \
         done",
    ])?;
    let files: Vec<(String, PathBuf)> = placements(&listed)
        .into_iter()
        .map(|(guest, real)| (guest, host_path(&root, &real)))
        .collect();
    if !files.iter().any(|(g, _)| g.ends_with("/bpftrace")) {
        bail!("no bpftrace in the peer root: {listed}");
    }
    if !files.iter().any(|(g, _)| g.ends_with("/ld.so")) {
        bail!("ldd named no dynamic loader for bpftrace: {listed}");
    }
    Ok(files)
}

/// (path in the guest, real path in the root) from the "name real-path"
/// lines the root printed.
fn placements(listed: &str) -> Vec<(String, String)> {
    listed
        .lines()
        .filter_map(|line| line.trim().split_once(' '))
        .filter(|(_, real)| real.starts_with('/'))
        .map(|(name, real)| {
            let guest = if name == "bpftrace" {
                format!("{GUEST_DIR}/bpftrace")
            } else if name.starts_with('/') {
                // The dynamic loader, named by its absolute path.
                format!("{GUEST_DIR}/ld.so")
            } else {
                format!("{GUEST_DIR}/lib/{name}")
            };
            (guest, real.to_owned())
        })
        .collect()
}

fn host_path(root: &SuiteRoot, inside: &str) -> PathBuf {
    root.dir.join(inside.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_keep_the_name_the_binary_asks_for() {
        let listed = "bpftrace /usr/bin/bpftrace\n\
                      libLLVM.so.19.1 /usr/lib/x86_64-linux-gnu/libLLVM.so.19.1\n\
                      libz.so.1 /usr/lib/x86_64-linux-gnu/libz.so.1.3.1\n\
                      /lib64/ld-linux-x86-64.so.2 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\n\
                      linux-vdso.so.1 linux-vdso.so.1\n";
        let p = placements(listed);
        let want = [
            (format!("{GUEST_DIR}/bpftrace"), "/usr/bin/bpftrace"),
            (
                format!("{GUEST_DIR}/lib/libLLVM.so.19.1"),
                "/usr/lib/x86_64-linux-gnu/libLLVM.so.19.1",
            ),
            (
                format!("{GUEST_DIR}/lib/libz.so.1"),
                "/usr/lib/x86_64-linux-gnu/libz.so.1.3.1",
            ),
            (
                format!("{GUEST_DIR}/ld.so"),
                "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            ),
        ];
        let want: Vec<(String, String)> =
            want.into_iter().map(|(g, r)| (g, r.to_owned())).collect();
        assert_eq!(p, want, "the vdso has no file and is left out");
    }
}
