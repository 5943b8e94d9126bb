//! The daemon's capabilities once its programs are attached: what it still
//! uses, and nothing more. Loading and attaching need CAP_BPF and
//! CAP_PERFMON (or CAP_SYS_ADMIN); after that the maps and programs are
//! read through the file descriptors already open, which needs none. What
//! stays: CAP_SYSLOG, because /proc/kallsyms shows addresses only to an
//! opener holding it (kptr_restrict=1) and the symbol table is read again
//! when modules come and go; CAP_NET_BIND_SERVICE only while the listener
//! is on a port below 1024.

use anyhow::{Context, Result};
use caps::{CapSet, Capability, CapsHashSet};
use std::net::SocketAddr;

/// Capabilities with the reason each is kept, for the log.
pub type Kept = Vec<(Capability, &'static str)>;

/// What a dropped process keeps, with the reason logged for each.
pub fn kept(listen: SocketAddr) -> Kept {
    let mut keep = vec![(
        Capability::CAP_SYSLOG,
        "reading /proc/kallsyms for call paths",
    )];
    if listen.port() < 1024 {
        keep.push((
            Capability::CAP_NET_BIND_SERVICE,
            "the /metrics listener is on a port below 1024",
        ));
    }
    keep
}

/// Narrows this process's capabilities to `keep`, of those it holds: the
/// effective, permitted and inheritable sets, and the ambient set emptied;
/// no_new_privs so no exec can win them back. Returns what was kept (with
/// why) and what was dropped.
pub fn drop_all_but(keep: &[(Capability, &'static str)]) -> Result<(Kept, Vec<Capability>)> {
    let held = caps::read(None, CapSet::Permitted).context("reading the permitted capabilities")?;
    let kept: Kept = keep
        .iter()
        .filter(|(c, _)| held.contains(c))
        .copied()
        .collect();
    let keep: CapsHashSet = kept.iter().map(|(c, _)| *c).collect();
    let mut dropped: Vec<Capability> = held.difference(&keep).copied().collect();
    dropped.sort_by_key(|c| c.index());
    caps::clear(None, CapSet::Ambient).context("clearing the ambient capabilities")?;
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new())
        .context("clearing the inheritable capabilities")?;
    caps::set(None, CapSet::Effective, &keep).context("narrowing the effective capabilities")?;
    caps::set(None, CapSet::Permitted, &keep).context("narrowing the permitted capabilities")?;
    // SAFETY: prctl with plain integer arguments; it changes only this
    // process's flag.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setting no_new_privs");
    }
    Ok((kept, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_syslog_and_a_low_port_s_binding_only() {
        let high: SocketAddr = "127.0.0.1:19463".parse().unwrap();
        let low: SocketAddr = "0.0.0.0:443".parse().unwrap();
        let caps = |a| kept(a).into_iter().map(|(c, _)| c).collect::<Vec<_>>();
        assert_eq!(caps(high), [Capability::CAP_SYSLOG]);
        assert_eq!(
            caps(low),
            [Capability::CAP_SYSLOG, Capability::CAP_NET_BIND_SERVICE]
        );
        assert!(kept(high).iter().all(|(_, why)| !why.is_empty()));
    }
}
