//! `cargo xtask deploy-test`: the systemd guest's checks and payload,
//! declared once for both sides. The guest runs `pfnwatch-deploy-checks`
//! from a systemd unit and reports on the console with the `checks` lines;
//! the host fails a boot that did not report every check below.

/// Where xtask puts the payload in the guest's root.
pub const PAYLOAD: &str = "/opt/pfnwatch-deploytest";
/// The checks' program, in the payload.
pub const PROGRAM: &str = "pfnwatch-deploy-checks";
/// Payload files: the package (its name as cargo-deb made it, `*.deb`), the
/// OCI image archive, the podman command derived from the DaemonSet (JSON:
/// `options`, `image`, `args`), the DaemonSet's ConfigMap (`k8s/pfnwatch.toml`), Prometheus's
/// configuration, and, where the suite's default seccomp profile refuses
/// bpf(2) to CAP_BPF, the profile derived from it.
pub const IMAGE: &str = "pfnwatch-oci.tar";
pub const PODMAN_RUN: &str = "podman-run.json";
pub const K8S_CONFIG_DIR: &str = "k8s";
pub const PROMETHEUS_CONFIG: &str = "prometheus.yml";
pub const SECCOMP_PROFILE: &str = "seccomp-bpf.json";

/// Every check the guest must report, in order.
pub const CHECKS: [&str; 18] = [
    "boot",
    "deb-install",
    "service-active",
    "service-hardening",
    "unit-security",
    "metrics",
    "module/load",
    "journal/R6-critical",
    "journal/R2-call-path",
    "prometheus/target",
    "prometheus/PfnwatchRuleHit",
    "reload",
    "prometheus/PfnwatchHookNotAttached",
    "stop",
    "purge",
    "podman/seccomp",
    "podman/metrics",
    "podman/alerts",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_are_unique_and_protocol_safe() {
        let mut names = CHECKS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CHECKS.len());
        assert!(CHECKS.iter().all(|c| !c.contains(':') && !c.contains(' ')));
    }
}
