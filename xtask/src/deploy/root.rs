//! The systemd guest's Debian root, one per suite: debootstrap'ed with
//! systemd, the suite's kernel (exactly the release the bad-driver module is
//! built for), Prometheus and podman, then configured once for booting
//! under qemu. Cached in `target/vmtest/deploy/<suite>/` until the kernel
//! release or this recipe changes (chroot.rs keys the root on its package
//! list, which names the kernel release).

use std::{collections::BTreeSet, fs, path::Path};

use anyhow::{Context as _, Result};

use crate::{
    apt,
    chroot::{Origin, SuiteRoot},
    kernels::Kernel,
};

/// Bump when [`configure`] changes, so cached roots are configured again.
const RECIPE: &str = "deploy root recipe 1";

/// What every suite's root holds besides minbase: systemd as PID 1 (with
/// udev and dbus, as a real host), the kernel, Debian's Prometheus and
/// podman. No initramfs generator is named: the guest boots a mini initrd
/// xtask writes (boot_files.rs), and the kernel package pulls in its suite's
/// default generator anyway.
const COMMON: [&str; 8] = [
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "prometheus",
    "podman",
    "kmod",
    // The package's one dependency (its unit reloads with /bin/kill); a
    // Debian host has it, a minbase root does not, and the guest installs
    // offline.
    "procps",
];

/// Packages a suite needs named explicitly. bookworm's containers-common
/// depends on the virtual `container-network-stack`, which debootstrap's
/// resolver cannot pick a provider for: netavark is the small one.
fn suite_extra(suite: &str) -> &'static [&'static str] {
    match suite {
        "bookworm" => &["netavark"],
        _ => &[],
    }
}

/// Units the packages enable that the test does not want running at boot:
/// the test starts Prometheus itself; the rest are timers and sockets that
/// cost boot time under TCG.
const DISABLED: [&str; 17] = [
    "prometheus.service",
    "podman.service",
    "podman.socket",
    "podman-auto-update.service",
    "podman-auto-update.timer",
    "podman-restart.service",
    "netavark-dhcp-proxy.socket",
    "netavark-dhcp-proxy.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "man-db.timer",
    "getty@tty1.service",
    "remote-fs.target",
];

/// The root for `kernel`'s suite, made or reused, configured.
pub fn ensure(work: &Path, kernel: &Kernel) -> Result<SuiteRoot> {
    let suite = kernel.spec.suite;
    let include: BTreeSet<String> = COMMON
        .iter()
        .chain(suite_extra(suite))
        .map(|p| (*p).to_owned())
        .chain([kernel.package.clone()])
        .collect();
    let (root, origin) = SuiteRoot::ensure(work, suite, &apt::host_archive(), &include)
        .with_context(|| format!("making the {suite} root"))?;
    let stamp = work.join(format!("{suite}.configured"));
    match origin {
        Origin::Reused if fs::read_to_string(&stamp).is_ok_and(|s| s == RECIPE) => {
            println!("[{suite}] root reused: {}", root.dir.display());
            return Ok(root);
        }
        Origin::Reused => {}
        Origin::Made(took) => println!(
            "[{suite}] root made in {:.0} s (debootstrap --include={})",
            took.as_secs_f64(),
            include.iter().cloned().collect::<Vec<_>>().join(",")
        ),
    }
    let _ = fs::remove_file(&stamp);
    configure(&root)?;
    fs::write(&stamp, RECIPE).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(root)
}

/// Hostname, fstab, units off, apt's caches gone (installing a local .deb
/// needs no lists, and they are a quarter of the image).
fn configure(root: &SuiteRoot) -> Result<()> {
    root.run(&[
        "sh",
        "-c",
        "echo pfnwatch-guest > /etc/hostname && \
         printf '127.0.0.1\\tlocalhost\\n127.0.1.1\\tpfnwatch-guest\\n' > /etc/hosts && \
         printf 'LABEL=root\\t/\\text4\\tdefaults\\t0\\t0\\n' > /etc/fstab && \
         rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin && \
         find /var/lib/apt/lists -type f ! -name lock -delete",
    ])?;
    for unit in DISABLED {
        // A unit this suite's packages do not have is fine.
        let _ = root.run(&["systemctl", "disable", "--quiet", unit]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookworm_names_a_network_stack() {
        assert_eq!(suite_extra("bookworm"), ["netavark"]);
        assert!(suite_extra("trixie").is_empty());
    }
}
