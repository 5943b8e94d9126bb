//! `pfnwatch check`: what this kernel supports, and whether pfnwatch can
//! see what it must. Exit 0 when every hook this kernel has attaches and
//! nothing essential is missing; 1 otherwise.

use crate::kernel::facts::{self as kernel, Caps, PteSpecial};
use crate::kernel::loader::{self, LoadOptions, ProgramReport, ProgramState};
use crate::kernel::programs::{self, PROGRAMS};
use crate::kernel::refusals;
use crate::rules::{Context, RuleConfig, RuleSet, Selection};
use crate::views::line::Format;
use pfnwatch_common::abi;
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub release: String,
    pub arch: &'static str,
    /// Why pfnwatch does not run on this architecture, if it does not.
    pub arch_unsupported: Option<String>,
    /// The page-table layout pfnwatch decodes with here.
    pub page_tables: Option<String>,
    pub btf: BtfStatus,
    pub capabilities: Option<Caps>,
    pub can_trace: bool,
    pub pte_special: PteSpecial,
    pub restrictions: Vec<String>,
    /// Set when the object itself could not be loaded (maps, relocation).
    pub load_error: Option<String>,
    pub programs: Vec<ProgramReport>,
    /// What pfnwatch cannot see on this kernel.
    pub gaps: Vec<String>,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct BtfStatus {
    pub found: bool,
    pub path: String,
    pub error: Option<String>,
}

pub fn check(btf_path: Option<&Path>) -> CheckReport {
    let release = kernel::release();
    let capabilities = Caps::current().ok();
    let geometry = kernel::host_geometry();
    let mut report = CheckReport {
        pte_special: kernel::pte_special(&release),
        release,
        arch: std::env::consts::ARCH,
        arch_unsupported: geometry.as_ref().err().cloned(),
        page_tables: geometry.as_ref().ok().map(kernel::describe_geometry),
        btf: BtfStatus {
            found: false,
            path: btf_path.map_or(kernel::SYS_BTF.into(), |p| p.display().to_string()),
            error: None,
        },
        can_trace: capabilities.is_some_and(Caps::can_trace),
        capabilities,
        restrictions: kernel::bpf_restrictions(),
        load_error: None,
        programs: Vec::new(),
        gaps: Vec::new(),
        ok: false,
    };
    let kernel::KernelBtf { btf, functions } = match kernel::load_btf(btf_path) {
        Ok(found) => found,
        Err(e) => {
            report.btf.error = Some(format!("{e:#}"));
            report
                .gaps
                .push("no kernel BTF: nothing can be attached".into());
            return report;
        }
    };
    report.btf.found = true;
    let rules = RuleSet::new(
        RuleConfig::default(),
        Context {
            arch_pte_special: report.pte_special.present,
        },
    );
    match loader::load(LoadOptions {
        btf,
        functions: &functions,
        selection: Selection::Rules,
        rules: &rules,
        ringbuf_bytes: abi::RINGBUF_BYTES,
        // The verifier drops the stack code when this is off: check it loads.
        capture_stack: true,
        hooks: None,
        narrow: None,
        only_pids: &[],
        addresses: None,
    }) {
        Ok(watcher) => report.programs = watcher.programs.clone(),
        Err(e) => {
            report.load_error = Some(format!("{e:#}"));
            report.programs = PROGRAMS
                .iter()
                .map(|spec| {
                    let found = spec.target_on(|f| functions.has(f));
                    let state = if found.is_some() {
                        ProgramState::Refused {
                            errno: None,
                            error: "the object did not load".into(),
                            hint: "see load_error".into(),
                        }
                    } else {
                        ProgramState::Missing
                    };
                    ProgramReport::new(spec, |f| functions.has(f), state)
                })
                .collect();
        }
    }
    report.gaps = loader::gaps(&report.programs);
    let refused = report
        .programs
        .iter()
        .any(|p| matches!(p.state, ProgramState::Refused { .. }));
    report.ok = report.load_error.is_none() && !refused && report.gaps.is_empty();
    report
}

pub fn render(report: &CheckReport, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_default(),
        Format::Text => text(report),
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn text(r: &CheckReport) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "pfnwatch check: kernel {} ({})", r.release, r.arch);
    if let Some(why) = &r.arch_unsupported {
        let _ = writeln!(s, "  architecture   UNSUPPORTED: {why}");
    }
    if let Some(layout) = &r.page_tables {
        let _ = writeln!(s, "  page tables    {layout}");
    }
    match &r.btf.error {
        None => {
            let _ = writeln!(s, "  BTF            found ({})", r.btf.path);
        }
        Some(e) => {
            let _ = writeln!(s, "  BTF            MISSING: {e}");
        }
    }
    match r.capabilities {
        Some(c) => {
            let _ = writeln!(
                s,
                "  capabilities   CAP_BPF {}, CAP_PERFMON {}, CAP_SYS_ADMIN {}{}",
                yes(c.bpf),
                yes(c.perfmon),
                yes(c.sys_admin),
                if r.can_trace {
                    ""
                } else {
                    " (not enough to trace)"
                }
            );
        }
        None => {
            let _ = writeln!(s, "  capabilities   unknown (/proc/self/status unreadable)");
        }
    }
    let _ = writeln!(
        s,
        "  pte_special    {} ({})",
        yes(r.pte_special.present),
        r.pte_special.source
    );
    for line in &r.restrictions {
        let _ = writeln!(s, "  restriction    {line}");
    }
    if let Some(e) = &r.load_error {
        let _ = writeln!(s, "  object         FAILED TO LOAD: {e}");
    }
    let _ = writeln!(s, "  hooks");
    let mut hints: Vec<&str> = Vec::new();
    for p in &r.programs {
        let state = match &p.state {
            ProgramState::Attached => "attachable".to_owned(),
            ProgramState::Standby => "attachable (attached while a device is mapped)".to_owned(),
            ProgramState::Missing => {
                let when = programs::availability(p.hook);
                format!("missing: not in this kernel ({when})")
            }
            ProgramState::Skipped => "not loaded (not asked for)".to_owned(),
            ProgramState::Refused { errno, error, hint } => {
                if !hints.contains(&hint.as_str()) {
                    hints.push(hint);
                }
                let errno =
                    errno.map_or(String::new(), |e| format!(" ({})", refusals::errno_name(e)));
                format!("REFUSED{errno}: {error}")
            }
        };
        let _ = writeln!(
            s,
            "    {:<26} {:<7} {state}",
            p.hook.function(),
            p.attach.section_prefix()
        );
    }
    for hint in hints {
        let _ = writeln!(s, "  hint           {hint}");
    }
    for gap in &r.gaps {
        let _ = writeln!(s, "  GAP            {gap}");
    }
    let _ = write!(
        s,
        "  result         {}",
        if r.ok {
            "ok: every hook this kernel has can attach"
        } else {
            "NOT OK: see above"
        }
    );
    s
}
