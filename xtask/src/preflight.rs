//! Host tools the VM tests need, which Debian package brings each, and installing
//! the missing ones (for `demo`).

use crate::arch::Arch;
use std::{os::unix::fs::MetadataExt as _, path::Path, process::Command};

use anyhow::{Result, bail};

use crate::{
    build::ensure_static,
    cmd::{describe, run_inherited, which},
};

/// Copied into the initramfs as every shell tool of the guest.
pub const BUSYBOX: &str = "/bin/busybox";

#[derive(Debug, Clone, Copy)]
enum Probe {
    /// A program on PATH.
    Command(&'static str),
    /// A file that must exist.
    File(&'static str),
    /// /bin/busybox, which must be the static build: the `busybox` package puts a
    /// dynamic one at the same path.
    StaticBusybox,
    /// Debian's python3 with its venv module (and ensurepip, which Debian
    /// splits into python3-venv).
    PythonVenv,
}

#[derive(Debug, Clone, Copy)]
struct Requirement {
    probe: Probe,
    package: &'static str,
}

const REQUIREMENTS: [Requirement; 12] = [
    Requirement {
        probe: Probe::Command(Arch::X86_64.qemu()),
        package: Arch::X86_64.qemu_package(),
    },
    // The arm64 guests (`--arch arm64`).
    Requirement {
        probe: Probe::Command(Arch::Arm64.qemu()),
        package: Arch::Arm64.qemu_package(),
    },
    // Builds the kernel programs (pfnwatch-ebpf's build script).
    Requirement {
        probe: Probe::Command("clang-19"),
        package: "clang-19",
    },
    Requirement {
        probe: Probe::File("/usr/include/bpf/bpf_helpers.h"),
        package: "libbpf-dev",
    },
    Requirement {
        probe: Probe::StaticBusybox,
        package: "busybox-static",
    },
    Requirement {
        probe: Probe::Command("dpkg-deb"),
        package: "dpkg",
    },
    Requirement {
        probe: Probe::Command("apt-get"),
        package: "apt",
    },
    // A root file system per Debian suite to build the bad-driver test module
    // against each test kernel's headers with that suite's compiler (badmod.rs).
    // In /usr/sbin, which is not on a normal user's PATH.
    Requirement {
        probe: Probe::File("/usr/sbin/debootstrap"),
        package: "debootstrap",
    },
    // deploy/pfnwatch.service is checked with `systemd-analyze verify` and
    // `security` (deploy_checks.rs); nothing is started.
    Requirement {
        probe: Probe::Command("systemd-analyze"),
        package: "systemd",
    },
    // The Debian package is checked with lintian (deploy_checks.rs).
    Requirement {
        probe: Probe::Command("lintian"),
        package: "lintian",
    },
    // deploy-test's disk image: `mkfs.ext4 -d` fills it from the root's
    // tree without mounting anything (1.43 and newer).
    Requirement {
        probe: Probe::File("/usr/sbin/mkfs.ext4"),
        package: "e2fsprogs",
    },
    // The venv kubernetes-validate is installed in (see below).
    Requirement {
        probe: Probe::PythonVenv,
        package: "python3-venv",
    },
];

/// kubernetes-validate from PyPI, pinned: deploy/kubernetes/ checked
/// against the Kubernetes API's schemas (deploy_checks.rs). Debian packages
/// no Kubernetes schemas, so it lives in a venv of its own under
/// target/vmtest/, made once per machine (`python3 -m venv`, Debian's
/// python3-venv).
const KUBERNETES_VALIDATE: &str = "1.37.0";

/// The venv's `kubernetes-validate`, installed first if missing.
pub fn kubernetes_validate(venv: &Path) -> Result<std::path::PathBuf> {
    let program = venv.join("bin/kubernetes-validate");
    let version = Command::new(&program).arg("--version").output();
    if version.is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(KUBERNETES_VALIDATE)) {
        return Ok(program);
    }
    let mut make = Command::new("/usr/bin/python3");
    make.args(["-m", "venv"]).arg(venv);
    println!("[host] + {}", describe(&make));
    run_inherited(&mut make)?;
    let mut install = Command::new(venv.join("bin/pip"));
    install
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("kubernetes-validate=={KUBERNETES_VALIDATE}"));
    println!("[host] + {}", describe(&install));
    run_inherited(&mut install)?;
    Ok(program)
}

/// Not needed by xtask (it writes the cpio itself) but handy for looking inside
/// target/vmtest/initramfs.cpio, so the demo installs it too.
const CONVENIENCE_PACKAGES: [&str; 1] = ["cpio"];

impl Probe {
    fn problem(self) -> Option<String> {
        match self {
            Probe::Command(program) => which(program)
                .is_none()
                .then(|| format!("`{program}` is not on PATH")),
            Probe::File(path) => (!Path::new(path).is_file()).then(|| format!("{path} is missing")),
            Probe::PythonVenv => {
                let ok = Command::new("/usr/bin/python3")
                    .args(["-c", "import ensurepip, venv"])
                    .output()
                    .is_ok_and(|out| out.status.success());
                (!ok).then(|| "python3's venv module (with ensurepip) is missing".to_owned())
            }
            Probe::StaticBusybox => {
                if !Path::new(BUSYBOX).is_file() {
                    Some(format!("{BUSYBOX} is missing"))
                } else {
                    ensure_static(Path::new(BUSYBOX))
                        .err()
                        .map(|err| format!("{err:#}"))
                }
            }
        }
    }
}

/// Missing requirements as (problem, package).
fn missing() -> Vec<(String, &'static str)> {
    REQUIREMENTS
        .iter()
        .filter_map(|req| req.probe.problem().map(|problem| (problem, req.package)))
        .collect()
}

/// Fails with the list of packages to install when a tool is missing.
pub fn check() -> Result<()> {
    let missing = missing();
    if missing.is_empty() {
        return Ok(());
    }
    let problems: Vec<String> = missing.iter().map(|(problem, _)| problem.clone()).collect();
    let mut packages: Vec<&str> = missing.iter().map(|(_, package)| *package).collect();
    packages.dedup();
    bail!(
        "missing host tools: {}.\nInstall them with: sudo apt-get install --no-install-recommends {}",
        problems.join("; "),
        packages.join(" ")
    )
}

/// Installs whatever is missing with apt-get (through sudo unless already root).
pub fn install_missing() -> Result<()> {
    let mut packages: Vec<&str> = missing().into_iter().map(|(_, package)| package).collect();
    packages.extend(
        CONVENIENCE_PACKAGES
            .into_iter()
            .filter(|package| which(package).is_none()),
    );
    packages.dedup();
    if packages.is_empty() {
        println!("host tools: all present");
        return Ok(());
    }
    println!("host tools: installing {}", packages.join(" "));
    let mut update = privileged("apt-get")?;
    update.arg("update");
    println!("+ {}", describe(&update));
    run_inherited(&mut update)?;
    let mut install = privileged("apt-get")?;
    install
        .args(["install", "-y", "--no-install-recommends"])
        .args(&packages);
    println!("+ {}", describe(&install));
    run_inherited(&mut install)?;
    // Anything still missing now (e.g. a package name this Debian lacks) is fatal.
    check()
}

/// `program` as root: directly when we are root, else through sudo.
pub fn privileged(program: &str) -> Result<Command> {
    // /proc/self belongs to the process's effective uid: no libc call needed.
    let is_root = Path::new("/proc/self")
        .metadata()
        .is_ok_and(|meta| meta.uid() == 0);
    if is_root {
        return Ok(Command::new(program));
    }
    if which("sudo").is_none() {
        bail!("not root and no sudo: run `{program}` as root to install the missing packages");
    }
    let mut command = Command::new("sudo");
    command.arg(program);
    Ok(command)
}
