//! What qemu boots the systemd guest from: the root's tree as an ext4 disk
//! image (`mkfs.ext4 -d`: no mount, no loop device), and a mini initrd that
//! loads the few modules an ext4 root on virtio-blk needs and hands over to
//! systemd. The same initrd for every suite: no initramfs-tools or dracut
//! behaviour to track (testing's dracut initrd alone took 30-80 s to boot
//! under TCG).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    chroot::SuiteRoot, cmd::describe, initramfs::Initramfs, kmods, preflight::BUSYBOX,
    preflight::privileged,
};

/// Room for the root (0.7-1.1 GB) and what the test writes (podman's
/// storage, Prometheus's TSDB, the journal). The file is sparse.
const IMAGE_SIZE: &str = "3G";
/// What mounting the root needs; modprobe in the root orders them with
/// their dependencies, which change between kernels (crc32c, crc16).
const ROOT_MODULES: [&str; 3] = ["virtio_pci", "virtio_blk", "ext4"];

/// Busybox's shell runs it: mount, load, wait for the disk, switch_root.
const INIT: &str = "#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t proc proc /proc
for m in $(/bin/busybox cat /mod/order); do
  /bin/busybox insmod /mod/$m || echo \"mini-initrd: insmod $m failed\"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do /bin/busybox sleep 0.1; i=$((i+1)); done
/bin/busybox mount -t ext4 -o rw /dev/vda /newroot || echo 'mini-initrd: cannot mount /dev/vda'
/bin/busybox umount /proc
/bin/busybox mount --move /dev /newroot/dev
exec /bin/busybox switch_root /newroot /sbin/init
";

/// `<work>/<suite>.ext4` from the root's tree. As root (through sudo
/// otherwise): e2fsprogs must read every file, and some are root's alone
/// (/etc/shadow); it still mounts nothing.
pub fn disk_image(root: &SuiteRoot, work: &Path, suite: &str) -> Result<PathBuf> {
    let image = work.join(format!("{suite}.ext4"));
    let _ = fs::remove_file(&image);
    let mut command = privileged("/usr/sbin/mkfs.ext4")?;
    command
        .args(["-q", "-F", "-L", "root", "-d"])
        .arg(&root.dir)
        .arg(&image)
        .arg(IMAGE_SIZE);
    let out = command
        .output()
        .with_context(|| format!("running {}", describe(&command)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(&command),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(image)
}

/// `<work>/<suite>.initrd.cpio` with the root's own modules for `release`.
pub fn mini_initrd(root: &SuiteRoot, work: &Path, suite: &str, release: &str) -> Result<PathBuf> {
    let mut args = vec!["modprobe", "-S", release, "--show-depends", "-a"];
    args.extend(ROOT_MODULES);
    let listed = root.run(&args)?;
    let modules = insmod_order(&listed);
    if modules.is_empty() && !listed.contains("builtin") {
        bail!("modprobe listed no modules for {ROOT_MODULES:?}: {listed}");
    }
    let mut initrd = Initramfs::default();
    for dir in ["bin", "dev", "proc", "newroot", "mod"] {
        initrd.dir(dir);
    }
    initrd.char_dev("dev/console", 5, 1, 0o600);
    initrd.file_from("bin/busybox", Path::new(BUSYBOX), 0o755)?;
    initrd.file("init", INIT.as_bytes().to_vec(), 0o755);
    let mut order = String::new();
    for (index, module) in modules.iter().enumerate() {
        let host = root.dir.join(module.trim_start_matches('/'));
        let raw = fs::read(&host).with_context(|| format!("reading {}", host.display()))?;
        let data = kmods::decompress(module, raw)
            .with_context(|| format!("decompressing {}", host.display()))?;
        let base = module.rsplit('/').next().unwrap_or(module);
        let name = format!(
            "{index:02}-{}",
            base.trim_end_matches(".xz").trim_end_matches(".zst")
        );
        initrd.file(&format!("mod/{name}"), data, 0o644);
        order.push_str(&name);
        order.push('\n');
    }
    initrd.file("mod/order", order.into_bytes(), 0o644);
    let path = work.join(format!("{suite}.initrd.cpio"));
    initrd.write_to(&path)?;
    Ok(path)
}

/// The module files of `modprobe --show-depends` output, first seen first.
fn insmod_order(listed: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for line in listed.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("insmod")
            && let Some(path) = words.next()
            && !seen.iter().any(|s| s == path)
        {
            seen.push(path.to_owned());
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_come_in_modprobe_order_once_each() {
        let listed = "builtin virtio_pci\n\
            insmod /lib/modules/6.12/kernel/drivers/block/virtio_blk.ko.xz \n\
            insmod /lib/modules/6.12/kernel/lib/crc16.ko.xz \n\
            insmod /lib/modules/6.12/kernel/fs/ext4/ext4.ko.xz \n\
            insmod /lib/modules/6.12/kernel/lib/crc16.ko.xz \n";
        assert_eq!(
            insmod_order(listed),
            [
                "/lib/modules/6.12/kernel/drivers/block/virtio_blk.ko.xz",
                "/lib/modules/6.12/kernel/lib/crc16.ko.xz",
                "/lib/modules/6.12/kernel/fs/ext4/ext4.ko.xz"
            ]
        );
    }
}
