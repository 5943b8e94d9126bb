//! What xtask puts into a suite's root before each boot, staged as a tree
//! under `target/vmtest/deploy/<suite>.payload/` and copied over the root:
//! the test unit, the checks program and the scenario runner, the bad
//! driver for this kernel, Prometheus's test configuration, and in
//! `/opt/pfnwatch-deploytest` (protocol's `deploy::PAYLOAD`) the package,
//! the OCI image, the DaemonSet as podman options with its ConfigMap, and
//! the derived seccomp profile where the suite needs one.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use pfnwatch_testbed_protocol::deploy::{
    IMAGE, K8S_CONFIG_DIR, PAYLOAD, PODMAN_RUN, PROGRAM, PROMETHEUS_CONFIG, SECCOMP_PROFILE,
};

use super::{daemonset, seccomp};
use crate::{badmod, chroot::SuiteRoot, cmd::run_inherited, preflight::privileged};

/// The test unit's name; it runs only when the kernel command line says
/// `pfnwatch.mode=test`, so the same image boots to a login otherwise.
pub const UNIT: &str = "pfnwatch-deploytest.service";

/// Runs the checks once the system is up and powers the VM off whatever
/// happens. Type=exec, not oneshot: a oneshot's start job would hold the
/// boot unfinished, and the checks wait for `is-system-running`.
/// SuccessAction=/FailureAction= are [Unit] options (in [Service] systemd
/// ignores them, and the VM would never stop).
fn unit() -> String {
    format!(
        "[Unit]
Description=pfnwatch deploy-test checks (cargo xtask deploy-test)
ConditionKernelCommandLine=pfnwatch.mode=test
After=multi-user.target
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=exec
ExecStart={PAYLOAD}/{PROGRAM}
StandardInput=null
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/ttyS0
TTYReset=no
TTYVHangup=no
# Type=exec ends the start timeout at exec: this bounds the whole run.
RuntimeMaxSec=1800

[Install]
WantedBy=multi-user.target
"
    )
}

/// deploy/prometheus/prometheus.yml as the guest's Prometheus runs it: the
/// shipped file with 5 s intervals (so alerts fire in seconds, not minutes)
/// and its rule file where the package installs it.
pub fn prometheus_config(shipped: &str) -> Result<String> {
    let replaced = shipped
        .replace(
            "  scrape_interval: 30s\n",
            "  scrape_interval: 5s\n  scrape_timeout: 5s\n",
        )
        .replace(
            "  evaluation_interval: 30s\n",
            "  evaluation_interval: 5s\n",
        )
        .replace(
            "  - pfnwatch.rules.yml\n",
            "  - /usr/share/pfnwatch/prometheus/pfnwatch.rules.yml\n",
        );
    if replaced.matches("5s\n").count() != 3 || !replaced.contains("/usr/share/pfnwatch/") {
        bail!("deploy/prometheus/prometheus.yml changed shape: update payload.rs");
    }
    Ok(replaced)
}

/// Inputs built once for every suite.
pub struct Shared<'a> {
    pub repo: &'a Path,
    pub deb: &'a Path,
    pub image: &'a Path,
    pub deploy_checks: &'a Path,
    pub scenario: &'a Path,
}

/// Stages the payload for `root` and copies it in; returns whether a
/// derived seccomp profile went with it.
pub fn install(
    root: &SuiteRoot,
    staging: &Path,
    shared: &Shared<'_>,
    module: &badmod::Module,
) -> Result<bool> {
    if staging.exists() {
        fs::remove_dir_all(staging).with_context(|| format!("clearing {}", staging.display()))?;
    }
    let put = |rel: &Path, data: &[u8]| -> Result<()> {
        let path = staging.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::write(&path, data).with_context(|| format!("writing {}", path.display()))
    };
    let copy = |from: &Path, rel: PathBuf| -> Result<()> {
        put(
            &rel,
            &fs::read(from).with_context(|| format!("reading {}", from.display()))?,
        )
    };
    let in_payload = |name: &str| Path::new(PAYLOAD.trim_start_matches('/')).join(name);

    let deb_name = shared.deb.file_name().context("the .deb has no name")?;
    copy(shared.deb, in_payload(&deb_name.to_string_lossy()))?;
    copy(shared.image, in_payload(IMAGE))?;
    copy(shared.deploy_checks, in_payload(PROGRAM))?;
    // guest/trigger.rs runs it as /bin/pfnwatch-scenario (/bin is usr/bin).
    copy(shared.scenario, PathBuf::from("usr/bin/pfnwatch-scenario"))?;
    copy(
        &module.ko,
        PathBuf::from("usr").join(badmod::guest_path(&module.release)),
    )?;

    let manifest_path = shared
        .repo
        .join("deploy/kubernetes/pfnwatch-daemonset.yaml");
    let manifest = fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let pod = daemonset::read(&manifest, &format!("{PAYLOAD}/{K8S_CONFIG_DIR}"))?;
    put(
        &in_payload(PODMAN_RUN),
        &serde_json::to_vec_pretty(&pod.run)?,
    )?;
    for (name, text) in &pod.config {
        put(&in_payload(K8S_CONFIG_DIR).join(name), text.as_bytes())?;
    }

    let profile_path = root.dir.join("usr/share/containers/seccomp.json");
    let profile = fs::read_to_string(&profile_path)
        .with_context(|| format!("reading {}", profile_path.display()))?;
    let derived = seccomp::derive(&profile)?;
    if let Some(derived) = &derived {
        put(&in_payload(SECCOMP_PROFILE), derived.as_bytes())?;
    }

    let shipped = shared.repo.join("deploy/prometheus/prometheus.yml");
    let config = prometheus_config(
        &fs::read_to_string(&shipped).with_context(|| format!("reading {}", shipped.display()))?,
    )?;
    put(&in_payload(PROMETHEUS_CONFIG), config.as_bytes())?;
    // Debian's unit runs `prometheus $ARGS` from this file.
    put(
        Path::new("etc/default/prometheus"),
        format!("ARGS=\"--config.file={PAYLOAD}/{PROMETHEUS_CONFIG}\"\n").as_bytes(),
    )?;

    put(
        &Path::new("etc/systemd/system").join(UNIT),
        unit().as_bytes(),
    )?;
    let wants = staging.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).with_context(|| format!("creating {}", wants.display()))?;
    std::os::unix::fs::symlink(format!("/etc/systemd/system/{UNIT}"), wants.join(UNIT))
        .context("linking the test unit into multi-user.target.wants")?;
    for exe in [
        in_payload(PROGRAM),
        PathBuf::from("usr/bin/pfnwatch-scenario"),
    ] {
        let mut perms = fs::metadata(staging.join(&exe))?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        fs::set_permissions(staging.join(&exe), perms)?;
    }

    // Into the root (root-owned: through sudo when not root). The old
    // payload goes first, so nothing of an earlier run stays.
    crate::chroot::remove_tree(&root.dir.join(PAYLOAD.trim_start_matches('/')))?;
    let mut cp = privileged("cp")?;
    cp.args(["-rT", "--no-preserve=ownership"])
        .arg(staging)
        .arg(&root.dir);
    run_inherited(&mut cp)?;
    Ok(derived.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_runs_the_shipped_config_faster() {
        let shipped = include_str!("../../../deploy/prometheus/prometheus.yml");
        let config = prometheus_config(shipped).unwrap();
        assert!(config.contains("scrape_interval: 5s"));
        assert!(config.contains("evaluation_interval: 5s"));
        assert!(config.contains("- /usr/share/pfnwatch/prometheus/pfnwatch.rules.yml"));
        assert!(config.contains("localhost:19463"));
    }

    #[test]
    fn the_unit_powers_off_from_unit_section() {
        let unit = unit();
        let (head, service) = unit.split_once("[Service]").unwrap();
        assert!(head.contains("SuccessAction=poweroff-force"));
        assert!(head.contains("FailureAction=poweroff-force"));
        assert!(service.contains(&format!("ExecStart={PAYLOAD}/{PROGRAM}")));
    }
}
