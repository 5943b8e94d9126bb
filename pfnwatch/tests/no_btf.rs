//! A kernel without BTF (or a broken BTF file): every command that loads
//! the programs refuses with a message naming the path and what to do, and
//! a non-zero exit. Runs the binary itself, on the host.

#![allow(clippy::unwrap_used)] // test code

use std::process::Command;

fn pfnwatch(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pfnwatch"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_btf_is_named_with_what_to_do() {
    let capture = std::env::temp_dir().join(format!("pfnwatch-no-btf-{}", std::process::id()));
    let capture_text = capture.display().to_string();
    for args in [
        &["trace", "--btf", "/nonexistent/vmlinux", "--duration", "1s"][..],
        &[
            "record",
            &capture_text,
            "--btf",
            "/nonexistent/vmlinux",
            "--duration",
            "1s",
        ],
    ] {
        let (ok, stderr) = pfnwatch(args);
        assert!(!ok, "{args:?} succeeded");
        assert!(
            stderr.contains("no kernel BTF at /nonexistent/vmlinux")
                && stderr.contains("CONFIG_DEBUG_INFO_BTF")
                && stderr.contains("--btf"),
            "{args:?}: {stderr}"
        );
    }
    // Nothing half-done: no capture file left behind.
    assert!(!capture.exists(), "record left {capture_text}");
}

#[test]
fn a_file_that_is_no_btf_is_refused_naming_it() {
    let path = std::env::temp_dir().join(format!("pfnwatch-not-btf-{}", std::process::id()));
    std::fs::write(&path, b"this is not BTF").unwrap();
    let path_text = path.display().to_string();
    let (ok, stderr) = pfnwatch(&["trace", "--btf", &path_text, "--duration", "1s"]);
    std::fs::remove_file(&path).unwrap();
    assert!(!ok);
    assert!(
        stderr.contains(&format!("reading BTF {path_text}")),
        "{stderr}"
    );
}
