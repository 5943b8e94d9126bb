//! The correct-driver scenarios' part of the guest: their devices brought
//! up before pfnwatch starts (`device/*`), and under `pfnwatch run` no
//! warning or critical alert for any of them (`run/<scenario>`).

use super::Reporter;
use crate::devices;
use crate::expect::KernelVersion;
use crate::kmod::Loaded;
use crate::report::Report;
use crate::scenario::{PAGES, Scenario};
use pfnwatch::pipeline::alert::Alert;
use pfnwatch::rules::{RuleId, Severity};
use std::collections::BTreeMap;

/// Loads the Debian drivers and brings their devices up: one check each,
/// for the devices this kernel's scenarios use.
pub fn bring_up(rep: &mut Reporter, kernel: KernelVersion) {
    let chains = |loaded: &[Loaded]| {
        loaded
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    match devices::drm_card() {
        Ok((card, loaded)) => rep.pass(
            "device/drm",
            &format!(
                "bochs on qemu's bochs-display: {} ({loaded})",
                card.display()
            ),
        ),
        Err(e) => rep.fail("device/drm", &format!("{e:#}")),
    }
    match devices::uio_device() {
        Ok((node, size, loaded)) => rep.pass(
            "device/uio",
            &format!(
                "uio_pci_generic on qemu's edu: {} map0 {size:#x} bytes ({loaded})",
                node.display()
            ),
        ),
        Err(e) => rep.fail("device/uio", &format!("{e:#}")),
    }
    if !Scenario::DaxPrivate.runs_on(kernel) {
        return;
    }
    match devices::dax_file(PAGES) {
        Ok(loaded) => rep.pass(
            "device/dax",
            &format!(
                "/dev/pmem0 (memmap=) with ext2 -o dax at {}, {} through DAX ({})",
                devices::DAX_MOUNT,
                devices::DAX_FILE,
                chains(&loaded)
            ),
        ),
        Err(e) => rep.fail("device/dax", &format!("{e:#}")),
    }
}

/// A correct driver under `pfnwatch run`: no warning or critical alert,
/// exactly the info alerts its rules say, each naming the driver where
/// pfnwatch can name one.
pub fn run_alerts(rep: &mut Reporter, kernel: KernelVersion, report: &Report, alerts: &[Alert]) {
    let scenario = report.scenario;
    let mine: Vec<&Alert> = alerts
        .iter()
        .filter(|a| report.pids().any(|p| p == a.tgid))
        .collect();
    let mut got = BTreeMap::<(RuleId, Severity), u64>::new();
    for a in &mine {
        *got.entry((a.rule, a.severity)).or_default() += a.count;
    }
    let want: BTreeMap<(RuleId, Severity), u64> = scenario
        .alerts(kernel)
        .iter()
        .map(|a| ((a.rule, a.severity), a.count))
        .collect();
    let severe: Vec<String> = mine
        .iter()
        .filter(|a| a.severity >= Severity::Warning && !a.repeat)
        .map(|a| a.summary())
        .collect();
    let driver = scenario.expect().driver;
    let unnamed: Vec<String> = mine
        .iter()
        .filter(|a| driver.is_some() && a.driver.as_deref() != driver)
        .map(|a| format!("{} names driver {:?}", a.rule, a.driver))
        .collect();
    let show = |m: &BTreeMap<(RuleId, Severity), u64>| {
        if m.is_empty() {
            return "none".to_owned();
        }
        m.iter()
            .map(|((r, s), n)| format!("{r} {s} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut detail = format!(
        "alerts {} (expected {}; driver {})",
        show(&got),
        show(&want),
        driver.unwrap_or("not nameable")
    );
    if !severe.is_empty() {
        detail.push_str(&format!("; false alarms: {}", severe.join(" | ")));
    }
    if !unnamed.is_empty() {
        detail.push_str(&format!("; {}", unnamed.join(", ")));
    }
    rep.check(
        &format!("run/{scenario}"),
        got == want && severe.is_empty() && unnamed.is_empty(),
        &detail,
    );
}
