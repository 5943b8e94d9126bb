//! The page-table lookups attached on demand (`--lookups on-demand`, the
//! default): on standby while no device is mapped, attached when one is,
//! detached after the grace period, attached again for a mapping made
//! after that. Every other check counts exactly from the start, so it runs
//! with `--lookups always` unless it says otherwise.

use super::Reporter;
use super::daemon::{Scrape, scrape};
use crate::scenario::PCI_BAR;
use crate::sys::{self, Map};
use anyhow::{Context, Result};
use std::time::{Duration, Instant};

const ATTACHED: &str = "pfnwatch_lookups_attached";

/// `--lookups always` for a pfnwatch command line that does not choose.
pub fn always_unless_given(args: &[&str]) -> &'static [&'static str] {
    let live = !matches!(args.first(), Some(&"replay" | &"check" | &"manual"));
    if live && !args.iter().any(|a| a.starts_with("--lookups")) {
        &["--lookups", "always"]
    } else {
        &[]
    }
}

/// Under a `pfnwatch run` (process `pid`) on port `port` started with
/// `--lookups-grace 1` and no device mapped: standby, attach for a mapping
/// of the VGA BAR, detach once it is gone, count a mapping gone before it
/// could attach (and attach for it), attach again for a new one. Returns
/// that last mapping, which keeps the lookups attached for the checks that
/// follow.
pub fn on_demand(rep: &mut Reporter, port: u16, pid: u32) -> Result<Option<Map>> {
    let standby = scrape(port)?;
    rep.check(
        "lookups/standby",
        standby.get(ATTACHED, &[]) == Some(0.0)
            && standby.get("pfnwatch_lookups_watched_vmas", &[]) == Some(0.0)
            && standby.get("pfnwatch_hook_attached", &[("hook", "vm_normal_page")]) == Some(1.0),
        &format!(
            "no device mapped: lookups attached {:?}, watched vmas {:?}, \
             hook_attached{{vm_normal_page}} {:?} (want 0, 0, 1: on standby, not missing)",
            standby.get(ATTACHED, &[]),
            standby.get("pfnwatch_lookups_watched_vmas", &[]),
            standby.get("pfnwatch_hook_attached", &[("hook", "vm_normal_page")]),
        ),
    );
    // A vma whose free pfnwatch missed, as a task preempted inside the
    // free's program makes the kernel skip it: in the inventory, found by
    // no walk. The walk before the detach below (the second since start)
    // must sweep it.
    let stale = stale_entry()?;
    let bar = sys::open_rw(PCI_BAR, 0)?;
    let first = Map::file(&bar, 0, 1, false)?;
    let attached = until(port, |s| s.get(ATTACHED, &[]) == Some(1.0));
    rep.check(
        "lookups/attach",
        attached.is_some(),
        &delay_detail("the VGA BAR mapped", attached.as_ref()),
    );
    first.unmap()?;
    let detached = until(port, |s| {
        s.get(ATTACHED, &[]) == Some(0.0)
            && s.get("pfnwatch_lookups_detaches_total", &[]) == Some(1.0)
    });
    rep.check(
        "lookups/detach",
        detached.is_some(),
        &format!(
            "the mapping gone, grace 1 s: lookups attached {:?}, detaches {:?} (want 0, 1)",
            detached.as_ref().and_then(|s| s.get(ATTACHED, &[])),
            detached
                .as_ref()
                .and_then(|s| s.get("pfnwatch_lookups_detaches_total", &[])),
        ),
    );
    swept(rep, detached.as_ref(), &stale)?;
    unseen(rep, port, pid, &bar)?;
    let again = Map::file(&bar, 0, 1, false)?;
    let reattached = until(port, |s| {
        s.get(ATTACHED, &[]) == Some(1.0)
            && s.get("pfnwatch_lookups_attaches_total", &[]) == Some(3.0)
    });
    rep.check(
        "lookups/reattach",
        reattached.is_some(),
        &delay_detail(
            "the VGA BAR mapped again after the detach",
            reattached.as_ref(),
        ),
    );
    Ok(reattached.map(|_| again))
}

/// The key of a vma pfnwatch's inventory holds (the map named
/// `inventory` of highest id: the daemon's), never a kernel address.
const STALE_KEY: u64 = 0x5741_4c45;

/// pfnwatch's inventory map, opened by id (the daemon's: the newest).
pub(super) fn inventory() -> Result<aya::maps::HashMap<aya::maps::MapData, u64, [u64; 7]>> {
    let mut newest = None;
    for info in aya::maps::loaded_maps() {
        let info = info.context("listing the kernel's BPF maps")?;
        if info.name() == b"inventory" && newest.is_none_or(|id| info.id() > id) {
            newest = Some(info.id());
        }
    }
    let id = newest.context("no BPF map named inventory")?;
    let data = aya::maps::MapData::from_id(id).context("opening the inventory map")?;
    aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data))
        .context("the inventory map as a hash of u64 to struct tracked")
}

/// Puts a vma in the inventory as if its free had been missed: id, mm,
/// start, end, watched (no: it would keep the lookups attached), the walk
/// that last found it (none), vm_flags (VM_PFNMAP).
fn stale_entry() -> Result<u64> {
    let mut map = inventory()?;
    let tracked = [u64::MAX >> 1, 0, 0x7000_0000, 0x7000_1000, 0, 0, 0x400];
    map.insert(STALE_KEY, tracked, 0)
        .context("adding a stale vma to the inventory")?;
    Ok(STALE_KEY)
}

/// The walk before the detach swept the stale vma: gone from the map and
/// counted once.
fn swept(rep: &mut Reporter, detached: Option<&Scrape>, key: &u64) -> Result<()> {
    let map = inventory()?;
    let still = map.get(key, 0).is_ok();
    let unseen = detached.and_then(|s| s.get("pfnwatch_inventory_frees_unseen_total", &[]));
    rep.check(
        "lookups/sweep",
        !still && unseen == Some(1.0),
        &format!(
            "a vma in the inventory no walk found: still there {still}, \
             frees unseen {unseen:?} (want false, 1)"
        ),
    );
    Ok(())
}

/// A mapping made and gone while the daemon is stopped, so it cannot
/// attach in between: counted as unseen, and the lookups attach for the
/// grace period anyway (a process that maps its device briefly and often
/// is then watched); then they detach again.
fn unseen(rep: &mut Reporter, port: u16, pid: u32, bar: &std::os::fd::OwnedFd) -> Result<()> {
    let pid = libc::pid_t::try_from(pid)?;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let brief = Map::file(bar, 0, 1, false).and_then(Map::unmap);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    brief?;
    let counted = until(port, |s| {
        s.get("pfnwatch_lookups_unseen_mappings_total", &[]) == Some(1.0)
            && s.get("pfnwatch_lookups_attaches_total", &[]) == Some(2.0)
    });
    let get = |name: &str| counted.as_ref().and_then(|s| s.get(name, &[]));
    rep.check(
        "lookups/unseen",
        counted.is_some(),
        &format!(
            "a mapping made and gone while pfnwatch was stopped: unseen mappings {:?}, \
             attaches {:?} (want 1, 2); late wake-ups {:?}",
            get("pfnwatch_lookups_unseen_mappings_total"),
            get("pfnwatch_lookups_attaches_total"),
            get("pfnwatch_lookups_late_wakeups_total"),
        ),
    );
    let detached = until(port, |s| {
        s.get(ATTACHED, &[]) == Some(0.0)
            && s.get("pfnwatch_lookups_detaches_total", &[]) == Some(2.0)
    });
    if detached.is_none() {
        anyhow::bail!("the lookups did not detach again within {LIMIT:?} after the unseen mapping");
    }
    Ok(())
}

/// A host with a device in use: one page of the VGA BAR mapped, and the
/// lookups attached as `scrape` shows them. A bad driver's lookups are
/// then seen from the first one (with the lookups on demand, a device
/// mapped and used at once could pass before they attach: README, Cost).
pub fn device_in_use(scrape: impl Fn() -> Option<Scrape>) -> Result<Map> {
    let bar = sys::open_rw(PCI_BAR, 0)?;
    let map = Map::file(&bar, 0, 1, false)?;
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if scrape().is_some_and(|s| s.get(ATTACHED, &[]) == Some(1.0)) {
            return Ok(map);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("the lookups did not attach within {LIMIT:?} of a device mapping")
}

fn delay_detail(what: &str, scrape: Option<&Scrape>) -> String {
    match scrape {
        Some(s) => format!(
            "{what}: lookups attached {:.2} ms of guest time after the mmap",
            s.get("pfnwatch_lookups_attach_delay_seconds", &[])
                .unwrap_or(f64::NAN)
                * 1e3
        ),
        None => format!("{what}: the lookups did not attach within {LIMIT:?}"),
    }
}

/// Under TCG, with the grace period and a check a second: room enough.
const LIMIT: Duration = Duration::from_secs(20);

/// The first scrape within [`LIMIT`] that `ok` accepts.
fn until(port: u16, ok: impl Fn(&Scrape) -> bool) -> Option<Scrape> {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if let Ok(s) = scrape(port)
            && ok(&s)
        {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
