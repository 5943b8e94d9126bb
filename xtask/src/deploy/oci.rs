//! The container image the DaemonSet names, written by xtask as an OCI
//! image archive (`podman load -i`, `skopeo copy oci-archive:`, `ctr images
//! import`): one layer with the static pfnwatch and a static busybox (a
//! shell and wget for probes and `kubectl exec`), nothing else. No daemon,
//! buildah or root needed; reproducible (sorted, mtime 0, owner 0).

use std::{
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};
use flate2::{Compression, write::GzEncoder};
use serde_json::json;

/// Busybox applets the image links: a shell and wget (probes, debugging).
const APPLETS: [&str; 4] = ["sh", "wget", "cat", "ls"];
/// Empty directories: mount points of the DaemonSet's volumes, and what a
/// read-only root still needs to exist.
const DIRS: [&str; 8] = [
    "bin/",
    "usr/",
    "usr/bin/",
    "etc/",
    "etc/pfnwatch/",
    "var/",
    "var/lib/",
    "var/lib/pfnwatch/",
];

/// Writes the archive for image `reference` (e.g. `pfnwatch:0.1.0`) to `out`.
pub fn write(out: &Path, reference: &str, pfnwatch: &Path, busybox: &Path) -> Result<()> {
    let layer = layer(pfnwatch, busybox)?;
    let diff_id = sha256(&layer)?;
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&layer)?;
    let layer_gz = gz.finish()?;
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/bin:/bin"],
            "Entrypoint": ["/usr/bin/pfnwatch"],
            "Cmd": ["run"],
            "ExposedPorts": {"19463/tcp": {}},
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        "history": [{"created_by": "cargo xtask deploy-test (xtask/src/deploy/oci.rs)"}],
    }))?;
    let mut blobs = Vec::new();
    let config_desc = descriptor(
        &config,
        "application/vnd.oci.image.config.v1+json",
        &mut blobs,
    )?;
    let layer_desc = descriptor(
        &layer_gz,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        &mut blobs,
    )?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
    }))?;
    let mut manifest_desc = descriptor(
        &manifest,
        "application/vnd.oci.image.manifest.v1+json",
        &mut blobs,
    )?;
    manifest_desc["annotations"] = json!({ "org.opencontainers.image.ref.name": reference });
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [manifest_desc],
    }))?;

    let mut archive = tar::Builder::new(Vec::new());
    append_dir(&mut archive, "blobs/")?;
    append_dir(&mut archive, "blobs/sha256/")?;
    blobs.sort();
    blobs.dedup_by(|a, b| a.0 == b.0);
    for (digest, data) in &blobs {
        append_file(&mut archive, &format!("blobs/sha256/{digest}"), data, 0o644)?;
    }
    append_file(&mut archive, "index.json", &index, 0o644)?;
    append_file(
        &mut archive,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    )?;
    let bytes = archive.into_inner()?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))
}

/// The image's one layer, uncompressed.
fn layer(pfnwatch: &Path, busybox: &Path) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for dir in DIRS {
        append_dir(&mut tar, dir)?;
    }
    for dir in ["proc/", "sys/", "dev/", "tmp/", "run/"] {
        append_dir(&mut tar, dir)?;
    }
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    append_file(&mut tar, "bin/busybox", &read(busybox)?, 0o755)?;
    for applet in APPLETS {
        let mut header = header(tar::EntryType::Symlink, 0o777, 0);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox")?;
    }
    append_file(&mut tar, "usr/bin/pfnwatch", &read(pfnwatch)?, 0o755)?;
    Ok(tar.into_inner()?)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_dir(tar: &mut tar::Builder<Vec<u8>>, path: &str) -> Result<()> {
    let mut header = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut header, path, std::io::empty())?;
    Ok(())
}

fn append_file(tar: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) -> Result<()> {
    let mut header = header(tar::EntryType::Regular, mode, data.len() as u64);
    tar.append_data(&mut header, path, data)?;
    Ok(())
}

/// An OCI descriptor of `data`, whose blob is kept for the archive.
fn descriptor(
    data: &[u8],
    media_type: &str,
    blobs: &mut Vec<(String, Vec<u8>)>,
) -> Result<serde_json::Value> {
    let digest = sha256(data)?;
    blobs.push((digest.clone(), data.to_vec()));
    Ok(json!({
        "mediaType": media_type,
        "digest": format!("sha256:{digest}"),
        "size": data.len(),
    }))
}

/// Hex SHA-256 by coreutils' sha256sum (xtask needs no hash crate for it).
fn sha256(data: &[u8]) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running sha256sum")?;
    let mut stdin = child.stdin.take().context("sha256sum has no stdin")?;
    let data = data.to_vec();
    // Written from a thread: a large layer would fill the pipe while
    // sha256sum's output is not yet read.
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().context("waiting for sha256sum")?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the sha256sum writer panicked"))?
        .context("feeding sha256sum")?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().next() {
        Some(hex) if out.status.success() && hex.len() == 64 => Ok(hex.to_owned()),
        _ => bail!("sha256sum said {text:?} ({})", out.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            sha256(b"abc").unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_archive_is_an_oci_layout_naming_the_reference() {
        let dir = std::env::temp_dir().join(format!("xtask-oci-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("pfnwatch");
        std::fs::write(&bin, b"#!/bin/sh\n").unwrap();
        let out = dir.join("image.tar");
        write(&out, "pfnwatch:0.1.0", &bin, &bin).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut names = Vec::new();
        let mut index = String::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            if name == "index.json" {
                std::io::Read::read_to_string(&mut entry, &mut index).unwrap();
            }
            names.push(name);
        }
        assert!(names.contains(&"oci-layout".to_owned()));
        // config, layer and manifest
        assert_eq!(
            names
                .iter()
                .filter(|n| n.starts_with("blobs/sha256/") && n.len() > 20)
                .count(),
            3
        );
        assert!(
            index.contains("\"org.opencontainers.image.ref.name\":\"pfnwatch:0.1.0\""),
            "{index}"
        );
    }
}
