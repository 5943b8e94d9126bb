//! What the kernel says about programs, maps and processes: run counts and
//! times (kernel.bpf_stats_enabled), the memory a process's BPF objects hold
//! (/proc/<pid>/fdinfo), and a process's RSS and CPU time (/proc/<pid>/status, stat).

use anyhow::{Context, Result};
use pfnwatch::kernel::programs::PROGRAMS;
use pfnwatch_common::abi;
use std::collections::{BTreeMap, BTreeSet};

/// One program being measured: its id in the kernel, its full name (the
/// kernel keeps 15 bytes of it) and the function it is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prog {
    pub id: u32,
    pub name: String,
    pub function: String,
}

/// Run count and accumulated run time of one program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Runs {
    pub count: u64,
    pub time_ns: u64,
}

impl Runs {
    pub fn since(self, before: Runs) -> Runs {
        Runs {
            count: self.count.saturating_sub(before.count),
            time_ns: self.time_ns.saturating_sub(before.time_ns),
        }
    }
}

/// Turns kernel.bpf_stats_enabled on or off. The timed forks run with it
/// off: it adds two clock reads to every program run.
pub fn set_stats(on: bool) -> Result<()> {
    let path = pfnwatch::kernel::bpf_stats::SYSCTL;
    std::fs::write(path, if on { "1" } else { "0" }).with_context(|| format!("writing {path}"))
}

/// A program loaded in the kernel, as its bpf_prog_info shows it.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The first 15 bytes of its name.
    pub name: String,
    pub runs: Runs,
    pub jited_bytes: u32,
}

/// Every loaded program, by id.
pub fn loaded() -> Result<BTreeMap<u32, Loaded>> {
    aya::programs::loaded_programs()
        .map(|p| {
            let p = p.context("listing the kernel's BPF programs")?;
            let loaded = Loaded {
                name: String::from_utf8_lossy(p.name()).into_owned(),
                runs: Runs {
                    count: p.run_count(),
                    time_ns: u64::try_from(p.run_time().as_nanos()).unwrap_or(u64::MAX),
                },
                jited_bytes: p.size_jitted(),
            };
            Ok((p.id(), loaded))
        })
        .collect()
}

pub fn loaded_ids() -> Result<BTreeSet<u32>> {
    Ok(loaded()?.into_keys().collect())
}

/// The runs of `progs` now, by id.
pub fn runs(progs: &[Prog]) -> Result<BTreeMap<u32, Runs>> {
    let all = loaded()?;
    Ok(progs
        .iter()
        .filter_map(|p| Some((p.id, all.get(&p.id)?.runs)))
        .collect())
}

/// Names the programs a pfnwatch process loaded, from the ids that appeared
/// while it started (`new`: id -> kernel name, 15 bytes at most).
///
/// pfnwatch's loader loads programs one by one in `PROGRAMS` order, leaving
/// out those whose function the kernel lacks (`has`), and ids only grow: so
/// the n-th new id is the n-th program pfnwatch has here. Each kernel name
/// must be the start of the name that gives it; if not (the loader changed),
/// the kernel's names are kept and the function is unknown.
pub fn name_pfnwatch_programs(
    new: &BTreeMap<u32, String>,
    has: impl Fn(&str) -> bool,
) -> Vec<Prog> {
    // In load order: the hooks' programs, then the walk of every task's
    // vmas (kernel::lookups), loaded last.
    let walk = (abi::names::EXISTING_VMAS, "task_vma");
    let expected: Vec<(&str, &str)> = PROGRAMS
        .iter()
        .filter_map(|p| Some((p.name, p.target_on(&has)?)))
        .chain([walk])
        .collect();
    let fits = new.len() == expected.len()
        && new
            .values()
            .zip(&expected)
            .all(|(kernel, (name, _))| !kernel.is_empty() && name.starts_with(kernel.as_str()));
    new.iter()
        .enumerate()
        .map(|(i, (id, kernel))| match expected.get(i).filter(|_| fits) {
            Some((name, function)) => Prog {
                id: *id,
                name: (*name).to_owned(),
                function: (*function).to_owned(),
            },
            None => Prog {
                id: *id,
                name: kernel.clone(),
                function: "?".to_owned(),
            },
        })
        .collect()
}

/// A BPF map a process holds, as its fdinfo and the map's info show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapMemory {
    pub id: u32,
    pub name: String,
    pub map_type: String,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    /// What the kernel charges the map (fdinfo `memlock`).
    pub memlock: u64,
}

/// A program a process holds: its JIT'ed size and charged memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgMemory {
    pub id: u32,
    pub jited_bytes: u32,
    pub memlock: u64,
}

/// The BPF maps and programs behind `pid`'s file descriptors.
pub fn bpf_objects(pid: u32) -> Result<(Vec<MapMemory>, Vec<ProgMemory>)> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut maps = BTreeMap::new();
    let mut progs = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let path = entry.with_context(|| format!("listing {dir}"))?.path();
        // An fd closed since the listing is no BPF object of interest.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let info = fdinfo(&text);
        let num = |key: &str| info.get(key).and_then(|v| v.parse::<u64>().ok());
        let memlock = num("memlock").unwrap_or(0);
        if let Some(id) = num("map_id").and_then(|v| u32::try_from(v).ok()) {
            let map = aya::maps::MapInfo::from_id(id)
                .with_context(|| format!("map {id} of {}", path.display()))?;
            maps.insert(
                id,
                MapMemory {
                    id,
                    name: String::from_utf8_lossy(map.name()).into_owned(),
                    map_type: map
                        .map_type()
                        .map_or_else(|_| "unknown".to_owned(), |t| format!("{t:?}")),
                    key_size: map.key_size(),
                    value_size: map.value_size(),
                    max_entries: map.max_entries(),
                    memlock,
                },
            );
        } else if info.contains_key("prog_type") {
            // Link fds name their program too, but only program fds carry prog_type.
            if let Some(id) = num("prog_id").and_then(|v| u32::try_from(v).ok()) {
                progs.insert(id, memlock);
            }
        }
    }
    let loaded = loaded()?;
    let progs = progs
        .into_iter()
        .map(|(id, memlock)| ProgMemory {
            id,
            jited_bytes: loaded.get(&id).map_or(0, |l| l.jited_bytes),
            memlock,
        })
        .collect();
    Ok((maps.into_values().collect(), progs))
}

/// `key:\tvalue` lines of an fdinfo file.
pub fn fdinfo(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// Resident and peak resident memory of a process, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rss {
    pub vm_rss_kib: u64,
    pub vm_hwm_kib: u64,
}

pub fn rss(pid: u32) -> Result<Rss> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_rss(&text).with_context(|| format!("no VmRSS/VmHWM in {path}"))
}

pub fn parse_rss(status: &str) -> Option<Rss> {
    let kib = |key: &str| {
        status.lines().find_map(|l| {
            let v = l.strip_prefix(key)?.strip_prefix(':')?;
            v.trim().strip_suffix("kB")?.trim().parse().ok()
        })
    };
    Some(Rss {
        vm_rss_kib: kib("VmRSS")?,
        vm_hwm_kib: kib("VmHWM")?,
    })
}

/// Resident KiB per mapping of a process, keyed by "start name" (name:
/// `[heap]`, a file, or `anon`), from /proc/PID/smaps: where a growth is.
pub fn smaps_rss(pid: u32) -> Result<BTreeMap<String, u64>> {
    let path = format!("/proc/{pid}/smaps");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(parse_smaps_rss(&text))
}

pub fn parse_smaps_rss(smaps: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Rss:") {
            if let (Some(key), Some(kib)) = (
                current.take(),
                kib.trim()
                    .strip_suffix("kB")
                    .and_then(|v| v.trim().parse::<u64>().ok()),
            ) {
                out.insert(key, kib);
            }
            continue;
        }
        let mut words = line.split_whitespace();
        // A mapping's first line: "start-end perms offset dev inode [name]".
        let (Some(range), Some(perms)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((start, _)) = range.split_once('-') else {
            continue;
        };
        if perms.len() != 4 || !start.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let name = words.nth(3).unwrap_or("anon");
        current = Some(format!("{start} {name}"));
    }
    out
}

/// The mappings whose resident memory grew from `before` to `after`, most
/// first, as "name +KiB" (at most `n`).
pub fn grown(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    n: usize,
) -> Vec<String> {
    let mut up: Vec<(u64, &str)> = after
        .iter()
        .map(|(k, v)| {
            (
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
                k.as_str(),
            )
        })
        .filter(|(d, _)| *d > 0)
        .collect();
    up.sort_by_key(|u| std::cmp::Reverse(u.0));
    up.into_iter()
        .take(n)
        .map(|(d, k)| format!("{k} +{d}k"))
        .collect()
}

/// User plus system CPU time a process used so far, in milliseconds.
pub fn cpu_ms(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100);
    let ticks = parse_cpu_ticks(&text).with_context(|| format!("no utime/stime in {path}"))?;
    Ok(ticks * 1000 / hz)
}

/// utime + stime (fields 14 and 15) of a /proc/<pid>/stat line. The comm
/// (field 2) may hold spaces and parentheses: count from the last ')'.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, so index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(names: &[(u32, &str)]) -> BTreeMap<u32, String> {
        names.iter().map(|(id, n)| (*id, (*n).to_owned())).collect()
    }

    /// A 6.1 kernel, in the part that matters here: the huge pfn inserts
    /// under their `_prot` names, follow_phys, no folio_walk_start.
    fn on_6_1(f: &str) -> bool {
        [
            "vm_normal_page",
            "remap_pfn_range",
            "vmf_insert_pfn_pmd_prot",
            "follow_phys",
            "vm_area_free",
        ]
        .contains(&f)
    }

    #[test]
    fn smaps_gives_each_mapping_its_resident_size_and_growth() {
        let before = "\
55d0c0a00000-55d0c0c00000 rw-p 00000000 00:00 0                          [heap]
Size:               2048 kB
Rss:                 900 kB
7f0000000000-7f0004000000 rw-p 00000000 00:00 0 
Size:              65536 kB
Rss:                 132 kB
7f1000000000-7f1000001000 r-xp 00000000 08:01 42                         /bin/pfnwatch
Rss:                   4 kB
";
        let m = parse_smaps_rss(before);
        assert_eq!(m.get("55d0c0a00000 [heap]"), Some(&900));
        assert_eq!(m.get("7f0000000000 anon"), Some(&132));
        assert_eq!(m.get("7f1000000000 /bin/pfnwatch"), Some(&4));
        let mut after = m.clone();
        after.insert("7f0000000000 anon".into(), 1832);
        after.insert("7f2000000000 anon".into(), 8);
        assert_eq!(
            grown(&m, &after, 3),
            ["7f0000000000 anon +1700k", "7f2000000000 anon +8k"]
        );
    }

    #[test]
    fn pfnwatch_programs_are_named_in_load_order() {
        let kernel = new(&[
            (40, "vm_normal_page_"),
            (41, "remap_pfn_range"),
            (42, "remap_pfn_range"),
            (44, "vmf_insert_pfn_"),
            (45, "vmf_insert_pfn_"),
            (46, "follow_phys_exi"),
            (47, "vm_area_free_en"),
            (48, "existing_vmas"),
        ]);
        let progs = name_pfnwatch_programs(&kernel, on_6_1);
        let names: Vec<(u32, &str, &str)> = progs
            .iter()
            .map(|p| (p.id, p.name.as_str(), p.function.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (40, "vm_normal_page_exit", "vm_normal_page"),
                (41, "remap_pfn_range_entry", "remap_pfn_range"),
                (42, "remap_pfn_range_exit", "remap_pfn_range"),
                (44, "vmf_insert_pfn_pmd_entry", "vmf_insert_pfn_pmd_prot"),
                (45, "vmf_insert_pfn_pmd_exit", "vmf_insert_pfn_pmd_prot"),
                (46, "follow_phys_exit", "follow_phys"),
                (47, "vm_area_free_entry", "vm_area_free"),
                (48, "existing_vmas", "task_vma"),
            ]
        );
    }

    #[test]
    fn a_mismatch_keeps_the_kernel_names() {
        // One program refused: eight expected, seven loaded.
        let kernel = new(&[
            (40, "vm_normal_page_"),
            (41, "remap_pfn_range"),
            (42, "remap_pfn_range"),
            (44, "vmf_insert_pfn_"),
            (46, "follow_phys_exi"),
            (47, "vm_area_free_en"),
            (48, "existing_vmas"),
        ]);
        let progs = name_pfnwatch_programs(&kernel, on_6_1);
        assert_eq!(progs.len(), 7);
        assert!(progs.iter().all(|p| p.function == "?"), "{progs:?}");
        assert_eq!(progs[2].name, "remap_pfn_range");
    }

    #[test]
    fn reads_fdinfo_status_and_stat() {
        let map = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t27\n\
                   key_size:\t0\nvalue_size:\t0\nmax_entries:\t262144\nmap_flags:\t0x0\n\
                   map_extra:\t0x0\nmemlock:\t270336\nmap_id:\t12\nfrozen:\t0\n";
        let info = fdinfo(map);
        assert_eq!(info.get("memlock").map(String::as_str), Some("270336"));
        assert_eq!(info.get("map_id").map(String::as_str), Some("12"));
        assert_eq!(info.get("max_entries").map(String::as_str), Some("262144"));

        let status =
            "Name:\tpfnwatch\nVmPeak:\t  20000 kB\nVmHWM:\t    9876 kB\nVmRSS:\t    8123 kB\n";
        assert_eq!(
            parse_rss(status),
            Some(Rss {
                vm_rss_kib: 8123,
                vm_hwm_kib: 9876
            })
        );
        assert_eq!(parse_rss("Name:\tx\n"), None);

        // A comm with a space and a parenthesis; utime 7, stime 5.
        let stat = "42 (pfn watch) x) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 300";
        assert_eq!(parse_cpu_ticks(stat), Some(12));
        assert_eq!(parse_cpu_ticks("42 (short) S 1"), None);
    }

    #[test]
    fn runs_subtract_without_wrapping() {
        let a = Runs {
            count: 10,
            time_ns: 500,
        };
        let b = Runs {
            count: 4,
            time_ns: 100,
        };
        assert_eq!(
            a.since(b),
            Runs {
                count: 6,
                time_ns: 400
            }
        );
        assert_eq!(b.since(a), Runs::default());
    }
}
