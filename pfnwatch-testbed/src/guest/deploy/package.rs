//! The Debian package: installed offline with apt (its postinst enables and
//! starts the service), and purged without a trace of what it installed.

use super::{Reporter, deb, host};
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Instant;

/// `deb-install`: `apt-get install ./pfnwatch_*.deb`, and the unit enabled.
pub fn install(rep: &mut Reporter) -> Result<()> {
    let deb = deb()?;
    let deb = deb.to_string_lossy().into_owned();
    let start = Instant::now();
    let installed = host::run(
        "apt-get",
        &["install", "-y", "--no-install-recommends", &deb],
    );
    let took = start.elapsed().as_secs_f64();
    let enabled = host::systemctl(&["is-enabled", "pfnwatch"]);
    match installed {
        Ok(_) => rep.check(
            "deb-install",
            enabled == "enabled",
            &format!("{deb} in {took:.1} s; unit {enabled}"),
        ),
        Err(e) => rep.fail("deb-install", &format!("{e:#}")),
    }
    Ok(())
}

/// `purge`: `apt-get purge pfnwatch` leaves none of the files the package
/// listed (its modified conffile included), no directory of its own, and
/// no unit.
pub fn purge(rep: &mut Reporter) -> Result<()> {
    let listed = host::run("dpkg-query", &["-L", "pfnwatch"]).context("listing the package")?;
    host::run("apt-get", &["purge", "-y", "pfnwatch"]).context("apt-get purge pfnwatch")?;
    let mut left = Vec::new();
    let mut kept_dirs = 0;
    for path in listed.lines().map(str::trim).filter(|p| p.starts_with('/')) {
        let path = Path::new(path);
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        // Directories other packages share (/usr/share/man/man1) stay while
        // they hold anything.
        let empty = meta.is_dir() && std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none());
        if meta.is_dir() && !empty {
            kept_dirs += 1;
        } else {
            left.push(path.display().to_string());
        }
    }
    for gone in [
        "/etc/pfnwatch",
        "/etc/systemd/system/multi-user.target.wants/pfnwatch.service",
        "/usr/share/pfnwatch",
        "/usr/share/doc/pfnwatch",
    ] {
        if Path::new(gone).symlink_metadata().is_ok() && !left.iter().any(|l| l == gone) {
            left.push(gone.to_owned());
        }
    }
    let unit = host::systemctl(&["is-enabled", "pfnwatch"]);
    // The DynamicUser's StateDirectory is systemd's, not the package's.
    let state = Path::new("/var/lib/private/pfnwatch").exists();
    rep.check(
        "purge",
        left.is_empty() && unit != "enabled",
        &format!(
            "{} paths listed, {kept_dirs} shared directories kept, left behind: {left:?}; \
             unit: {unit}; /var/lib/private/pfnwatch (systemd's StateDirectory) {}",
            listed.lines().count(),
            if state { "kept" } else { "absent" }
        ),
    );
    Ok(())
}
