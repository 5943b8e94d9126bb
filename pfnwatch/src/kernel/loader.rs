//! Loads the embedded object against the kernel's BTF and attaches every
//! program whose target this kernel has. A missing target is left out
//! before load and reported; a refusal is reported with its errno. Neither
//! stops the others.

use super::facts::{self, Caps};
use super::functions::Functions;
use super::lookups;
use super::programs::{self, Attach, PROGRAMS, ProgramSpec};
use super::refusals;
use crate::rules::{self, RuleSet, Selection};
use anyhow::{Context, Result};
use aya::programs::fentry::FEntryLinkId;
use aya::programs::fexit::FExitLinkId;
use aya::programs::{FEntry, FExit, Iter, ProgramError};
use aya::{Btf, Ebpf, EbpfLoader};
use pfnwatch_common::pgtable::Geometry;
use pfnwatch_common::{
    Hook, RecordMask,
    abi::{self, names},
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum ProgramState {
    Attached,
    /// A page-table lookup that attached and was detached again until a
    /// device mapping needs it (`--lookups on-demand`, `kernel::lookups`).
    Standby,
    /// The kernel has no such function (or it was inlined away).
    Missing,
    /// The kernel has it, but the caller did not ask for its hook
    /// (`trace --hook`): never loaded.
    Skipped,
    Refused {
        errno: Option<i32>,
        error: String,
        hint: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramReport {
    pub program: String,
    pub attach: Attach,
    /// The hook's kernel function.
    #[serde(rename = "function")]
    pub hook: Hook,
    /// The function the program attaches to on this kernel: the hook's, an
    /// older name of it, or one beside it (6.12's `__vm_area_free`).
    pub target: String,
    #[serde(flatten)]
    pub state: ProgramState,
}

impl ProgramState {
    /// Attached, or ready to attach the moment it is needed.
    pub fn works(&self) -> bool {
        matches!(self, ProgramState::Attached | ProgramState::Standby)
    }
}

impl ProgramReport {
    /// `spec`'s report on a kernel whose functions `has` knows.
    pub fn new(spec: &ProgramSpec, has: impl Fn(&str) -> bool, state: ProgramState) -> Self {
        ProgramReport {
            program: spec.name.to_owned(),
            attach: spec.attach,
            hook: spec.hook,
            target: spec.target_on(has).unwrap_or(spec.target()).to_owned(),
            state,
        }
    }
}

/// What pfnwatch would be blind to with these programs: the kernel has a
/// hook when any of its programs is not missing; the hook works when its
/// counting program is attached. A hook left out on purpose is no gap.
pub fn gaps(programs: &[ProgramReport]) -> Vec<String> {
    let exists = |h: Hook| {
        programs
            .iter()
            .any(|p| p.hook == h && p.state != ProgramState::Missing)
    };
    let attached = |h: Hook| {
        let counting = programs::counting_program(h);
        programs.iter().any(|p| {
            p.program == counting.name && (p.state.works() || p.state == ProgramState::Skipped)
        })
    };
    programs::coverage_gaps(exists, attached)
}

pub struct LoadOptions<'a> {
    /// The kernel's BTF, for CO-RE; dropped once the object is relocated.
    pub btf: Btf,
    /// The functions to attach to, and their ids ([`Functions::directory`]).
    pub functions: &'a Functions,
    pub selection: Selection,
    pub rules: &'a RuleSet,
    pub ringbuf_bytes: u32,
    /// Put the kernel call path in every record (bpf_get_stack).
    pub capture_stack: bool,
    /// Load only these hooks' programs (None: every hook).
    pub hooks: Option<&'a BTreeSet<Hook>>,
    /// ANDed into the record mask, so records a filter would drop never
    /// leave the kernel (None: the selection's mask as it is).
    pub narrow: Option<&'a RecordMask>,
    /// Records only for calls by these pids or tgids (empty: everyone's).
    pub only_pids: &'a [u32],
    /// What /proc/kallsyms says, if the caller read it already.
    pub addresses: Option<facts::KernelAddresses>,
}

/// The loaded object and what happened to each program. Dropping it
/// detaches everything.
pub struct Watcher {
    pub ebpf: Ebpf,
    /// The page-table layout the programs decode with.
    pub geometry: Geometry,
    pub programs: Vec<ProgramReport>,
    /// The links of the attached lookup programs, which `kernel::lookups`
    /// detaches and attaches again as device mappings come and go.
    pub lookup_links: Vec<(&'static ProgramSpec, Link)>,
}

/// One attachment of a program, to detach it by.
pub enum Link {
    Fentry(FEntryLinkId),
    Fexit(FExitLinkId),
}

impl Watcher {
    pub fn attached(&self) -> impl Iterator<Item = &ProgramReport> {
        self.programs
            .iter()
            .filter(|p| p.state == ProgramState::Attached)
    }
}

/// The kernel's pid filter slots and how many are used.
fn pid_slots(pids: &[u32]) -> Result<([u32; abi::PID_FILTER_SLOTS], u32)> {
    let mut slots = [0u32; abi::PID_FILTER_SLOTS];
    anyhow::ensure!(
        pids.len() <= slots.len(),
        "the kernel filters at most {} pids, got {}",
        slots.len(),
        pids.len()
    );
    slots[..pids.len()].copy_from_slice(pids);
    Ok((slots, pids.len() as u32))
}

pub fn load(opts: LoadOptions<'_>) -> Result<Watcher> {
    let geometry = facts::host_geometry().map_err(|why| anyhow::anyhow!("{why}"))?;
    let mut mask = rules::record_mask(opts.selection, opts.rules);
    if let Some(narrow) = opts.narrow {
        mask.intersect(narrow);
    }
    let wanted = |hook: Hook| opts.hooks.is_none_or(|set| set.contains(&hook));
    for hook in Hook::ALL.into_iter().filter(|h| !wanted(*h)) {
        mask.clear_hook(hook);
    }
    // Of the records sent, those that may be a warning or critical hit.
    let mut urgent = rules::urgent_mask(opts.rules);
    urgent.intersect(&mask);
    let self_tgid = std::process::id();
    let (only_pids, only_pid_count) = pid_slots(opts.only_pids)?;
    let started = Instant::now();
    let addrs = opts.addresses.unwrap_or_else(facts::KernelAddresses::read);
    let kallsyms = started.elapsed();
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&opts.btf))
        .override_global(names::SELF_TGID, &self_tgid, true)
        // aya's Pod is foreign here: hand it the bytes.
        .override_global(names::GEOMETRY, bytemuck::bytes_of(&geometry), true)
        .override_global(names::PHYSICAL_MASK_ADDR, &addrs.physical_mask, true)
        .override_global(names::ZERO_PFN_ADDR, &addrs.zero_pfn, true)
        .override_global(
            names::SPECIAL_MAPPING_VMOPS,
            &addrs.special_mapping_vmops,
            true,
        )
        .override_global(names::SAFE_FOPS, &addrs.safe_fops, true)
        .override_global(names::RECORD_MASK, mask.words(), true)
        .override_global(names::URGENT_MASK, urgent.words(), true)
        .override_global(names::CAPTURE_STACK, &u32::from(opts.capture_stack), true)
        .override_global(names::ONLY_PIDS, &only_pids, true)
        .override_global(names::ONLY_PID_COUNT, &only_pid_count, true)
        .map_max_entries(names::EVENTS, opts.ringbuf_bytes)
        .load(pfnwatch_ebpf::OBJECT)
        .context("loading pfnwatch's BPF object (creating maps, CO-RE relocation)")?;
    let object = started.elapsed() - kallsyms;
    // The kernel's BTF is tens of megabytes: gone before the directory is built.
    drop(opts.btf);
    let functions = opts.functions;
    let directory = functions.directory();
    let mut slowest = (Duration::ZERO, "");
    let can_trace = Caps::current().is_ok_and(Caps::can_trace);
    let mut lookup_links = Vec::new();
    let programs = PROGRAMS
        .iter()
        .map(|spec| {
            let state = if wanted(spec.hook) {
                let at = Instant::now();
                let (state, link) =
                    load_and_attach(&mut ebpf, spec, &directory, functions, can_trace);
                slowest = slowest.max((at.elapsed(), spec.name));
                if let Some(link) = link.filter(|_| lookups::on_demand(spec.hook)) {
                    lookup_links.push((spec, link));
                }
                state
            } else if spec.target_on(|f| functions.has(f)).is_some() {
                ProgramState::Skipped
            } else {
                // Missing is a fact about the kernel, asked for or not.
                ProgramState::Missing
            };
            ProgramReport::new(spec, |f| functions.has(f), state)
        })
        .collect();
    let hooks = started.elapsed() - kallsyms - object;
    if let Err(e) = load_walk(&mut ebpf, &directory) {
        // Without the walk the lookups cannot know when to detach: they
        // stay attached (kernel::lookups), which costs, never blinds.
        tracing::warn!("{e:#}");
    }
    // Where a start's time goes (the cost issue's startup target).
    tracing::info!(
        total_ms = started.elapsed().as_millis(),
        kallsyms_ms = kallsyms.as_millis(),
        object_ms = object.as_millis(),
        hooks_ms = hooks.as_millis(),
        slowest = slowest.1,
        slowest_ms = slowest.0.as_millis(),
        "programs loaded"
    );
    Ok(Watcher {
        ebpf,
        geometry,
        programs,
        lookup_links,
    })
}

/// Loads the iter/task_vma program that walks every task's vmas. `btf`
/// need only hold [`super::functions::TASK_VMA_ITER`].
fn load_walk(ebpf: &mut Ebpf, btf: &Btf) -> Result<()> {
    let walk: &mut Iter = ebpf
        .program_mut(names::EXISTING_VMAS)
        .context("the object has no existing_vmas program")?
        .try_into()?;
    walk.load("task_vma", btf)
        .map_err(|e| anyhow::anyhow!("{}", refusals::describe(&e)))
        .context("loading existing_vmas (iter/task_vma): the lookups stay attached")
}

fn load_and_attach(
    ebpf: &mut Ebpf,
    spec: &ProgramSpec,
    btf: &Btf,
    functions: &Functions,
    can_trace: bool,
) -> (ProgramState, Option<Link>) {
    let Some(target) = spec.target_on(|f| functions.has(f)) else {
        return (ProgramState::Missing, None);
    };
    match try_attach(ebpf, spec, target, btf) {
        Ok(link) => (ProgramState::Attached, Some(link)),
        Err(err) => {
            if let ProgramError::LoadError { verifier_log, .. } = &err {
                tracing::debug!(program = spec.name, "verifier log:\n{verifier_log}");
            }
            let errno = refusals::errno(&err);
            let state = ProgramState::Refused {
                errno,
                error: refusals::describe(&err),
                hint: refusals::hint(errno, can_trace).to_owned(),
            };
            (state, None)
        }
    }
}

/// Loads `spec`'s program for `target`, then attaches it.
fn try_attach(
    ebpf: &mut Ebpf,
    spec: &ProgramSpec,
    target: &str,
    btf: &Btf,
) -> Result<Link, ProgramError> {
    let program = ebpf
        .program_mut(spec.name)
        .ok_or(ProgramError::UnexpectedProgramType)?;
    match spec.attach {
        Attach::Fentry => <&mut FEntry>::try_from(program)?.load(target, btf)?,
        Attach::Fexit => <&mut FExit>::try_from(program)?.load(target, btf)?,
    }
    attach(ebpf, spec)
}

/// Attaches a loaded program again.
pub fn attach(ebpf: &mut Ebpf, spec: &ProgramSpec) -> Result<Link, ProgramError> {
    let program = ebpf
        .program_mut(spec.name)
        .ok_or(ProgramError::UnexpectedProgramType)?;
    Ok(match spec.attach {
        Attach::Fentry => {
            let p: &mut FEntry = program.try_into()?;
            Link::Fentry(p.attach()?)
        }
        Attach::Fexit => {
            let p: &mut FExit = program.try_into()?;
            Link::Fexit(p.attach()?)
        }
    })
}

pub fn detach(ebpf: &mut Ebpf, spec: &ProgramSpec, link: Link) -> Result<(), ProgramError> {
    let program = ebpf
        .program_mut(spec.name)
        .ok_or(ProgramError::UnexpectedProgramType)?;
    match link {
        Link::Fentry(id) => {
            let p: &mut FEntry = program.try_into()?;
            p.detach(id)
        }
        Link::Fexit(id) => {
            let p: &mut FExit = program.try_into()?;
            p.detach(id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(spec: &ProgramSpec, state: ProgramState) -> ProgramReport {
        ProgramReport::new(spec, |_| true, state)
    }

    /// A 6.12 kernel: no remap_pfn_range_complete, no print_bad_page_map.
    fn on_6_12(state: impl Fn(Hook) -> ProgramState) -> Vec<ProgramReport> {
        PROGRAMS
            .iter()
            .map(|p| match p.hook {
                Hook::RemapPfnRangeComplete | Hook::PrintBadPageMap => {
                    report(p, ProgramState::Missing)
                }
                hook => report(p, state(hook)),
            })
            .collect()
    }

    #[test]
    fn hooks_left_out_on_purpose_are_no_gap() {
        assert!(gaps(&on_6_12(|_| ProgramState::Attached)).is_empty());
        // trace --hook remap_pfn_range: the lookups are skipped, not missing.
        let only_remap = on_6_12(|h| {
            if h == Hook::RemapPfnRange {
                ProgramState::Attached
            } else {
                ProgramState::Skipped
            }
        });
        assert!(gaps(&only_remap).is_empty(), "{:?}", gaps(&only_remap));
        // A refused counting program still is one.
        let refused = on_6_12(|h| {
            if h == Hook::VmNormalPage {
                ProgramState::Refused {
                    errno: Some(1),
                    error: "EPERM".into(),
                    hint: String::new(),
                }
            } else {
                ProgramState::Skipped
            }
        });
        assert_eq!(gaps(&refused).len(), 1, "{:?}", gaps(&refused));
    }
}
