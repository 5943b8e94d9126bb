//! The OCI image under Debian's podman with exactly the DaemonSet's
//! security context (xtask turned the manifest into podman options): it
//! attaches, serves /metrics in its network namespace and logs the bad
//! driver's alerts with their call paths.

use super::super::daemon::Scrape;
use super::super::trigger;
use super::journal::symbolised;
use super::service::all_attached;
use super::{Reporter, host, payload};
use crate::scenario::Scenario;
use anyhow::{Context, Result};
use pfnwatch_testbed_protocol::deploy::{IMAGE, PODMAN_RUN, SECCOMP_PROFILE};
use std::time::Duration;

const NAME: &str = "pfnwatch-ds";

/// The manifest's container as podman options, image and arguments.
#[derive(serde::Deserialize)]
struct Run {
    options: Vec<String>,
    image: String,
    args: Vec<String>,
}

pub fn run(rep: &mut Reporter) -> Result<()> {
    let spec = payload(PODMAN_RUN);
    let run: Run = serde_json::from_str(
        &std::fs::read_to_string(&spec).with_context(|| format!("reading {}", spec.display()))?,
    )
    .with_context(|| format!("parsing {}", spec.display()))?;
    let image = payload(IMAGE).to_string_lossy().into_owned();
    let loaded = host::run("podman", &["load", "-q", "-i", &image])?;
    let version = host::run("podman", &["--version"]).unwrap_or_default();
    rep.info(&format!(
        "{}; podman load: {}",
        version.trim(),
        loaded.trim()
    ));

    let profile = payload(SECCOMP_PROFILE);
    let mut options: Vec<String> = run.options.clone();
    seccomp(rep, &run, profile.exists())?;
    if profile.exists() {
        options.push(format!("--security-opt=seccomp={}", profile.display()));
    }

    let mut args: Vec<String> = ["run", "-d", "--name", NAME]
        .into_iter()
        .map(str::to_owned)
        .chain(options)
        .chain([run.image.clone()])
        .chain(run.args.clone())
        .collect();
    args.retain(|a| !a.is_empty());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    host::run("podman", &argv)?;
    let result = checks(rep);
    let logs = host::output("podman", &["logs", NAME])
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    rep.info(&format!("container log: {}", host::tail(&logs, 6)));
    let _ = host::run("podman", &["rm", "-f", NAME]);
    result
}

/// `podman/seccomp`: what the runtime's default profile does with bpf(2).
/// Where xtask derived a profile (the suite's default refuses bpf(2) to
/// CAP_BPF without CAP_SYS_ADMIN), `pfnwatch check` under the default must
/// fail with EPERM, as documented; elsewhere it must pass.
fn seccomp(rep: &mut Reporter, run: &Run, derived: bool) -> Result<()> {
    let mut args: Vec<&str> = vec!["run", "--rm"];
    args.extend(run.options.iter().map(String::as_str));
    args.extend([run.image.as_str(), "check"]);
    let out = host::output("podman", &args)?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = !out.status.success() && said.contains("Operation not permitted");
    if derived {
        rep.check(
            "podman/seccomp",
            refused,
            &format!(
                "the default profile must refuse bpf(2) without CAP_SYS_ADMIN: check {}; \
                 the profile derived from it is used below: {}",
                out.status,
                host::tail(&said, 2)
            ),
        );
    } else {
        rep.check(
            "podman/seccomp",
            out.status.success(),
            &format!(
                "pfnwatch check under the runtime's default profile: {}",
                out.status
            ),
        );
    }
    Ok(())
}

fn scrape_inside() -> Option<Scrape> {
    let body = host::run(
        "podman",
        &[
            "exec",
            NAME,
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:19463/metrics",
        ],
    )
    .ok()?;
    Scrape::parse(body).ok()
}

/// `podman/metrics` and `podman/alerts`.
fn checks(rep: &mut Reporter) -> Result<()> {
    match host::wait_for(Duration::from_secs(120), scrape_inside) {
        Some((s, took)) => {
            let (ok, detail) = all_attached(&s);
            rep.check(
                "podman/metrics",
                ok,
                &format!(
                    "/metrics in the pod's network namespace after {:.1} s; {detail}",
                    took.as_secs_f64()
                ),
            );
        }
        None => rep.fail(
            "podman/metrics",
            &format!(
                "no /metrics in 120 s; {}",
                host::systemctl(&["is-active", "pfnwatch"])
            ),
        ),
    }
    // The R6 lookups come right after the mmap: a device in use first.
    let _device = super::super::lookups::device_in_use(scrape_inside)?;
    trigger::run(Scenario::ModNormalPfnmap)?;
    let line = host::wait_for(Duration::from_secs(30), || {
        let out = host::output("podman", &["logs", NAME]).ok()?;
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find(|l| {
                l.contains("critical R6")
                    && l.contains("driver pfnwatch_badmod")
                    && l.split_once(" stack=")
                        .is_some_and(|(_, path)| symbolised(path.trim()))
            })
            .map(str::to_owned)
    });
    rep.check(
        "podman/alerts",
        line.is_some(),
        &line.map_or(
            "no symbolised critical R6 line naming pfnwatch_badmod in podman logs".to_owned(),
            |(l, _)| l,
        ),
    );
    Ok(())
}
