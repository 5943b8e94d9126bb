//! From one kernel's result lines to the figures BENCHMARKS.md shows:
//! per-round medians, ratios between configurations with their spread
//! over rounds, the programs' own cost, and memory.

use std::collections::BTreeMap;

use pfnwatch_testbed_protocol::bench::Line;

/// The median of `values` (the mean of the middle two for an even count).
/// The median of integer counts (guest nanoseconds, instructions).
pub fn median_of(values: &[u64]) -> Option<f64> {
    let values: Vec<f64> = values.iter().map(|v| *v as f64).collect();
    median(&values)
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// A figure over rounds: its median and range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub rounds: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        Some(Spread {
            median: median(values)?,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            rounds: values.len(),
        })
    }
}

/// Everything one kernel's guest measured.
#[derive(Debug, Default)]
pub struct KernelFigures {
    pub release: String,
    pub version: String,
    pub cpus: usize,
    pub mem_total_kib: u64,
    pub runs: u32,
    pub forks: u32,
    pub stats_forks: u32,
    /// workload -> (about, pages)
    pub workloads: BTreeMap<String, (String, u64)>,
    /// (workload, config) -> round -> median fork+exit ns of that round.
    pub fork_ns: BTreeMap<(String, String), BTreeMap<u32, f64>>,
    /// (workload, config, program) -> its runs, summed over rounds.
    pub programs: BTreeMap<(String, String, String), ProgramFigures>,
    /// config -> its pfnwatch process, per round.
    pub processes: BTreeMap<String, Vec<Process>>,
    pub maps: Vec<Line>,
    pub code: Vec<Line>,
    /// From a device mapping's mmap to the lookups attached, per round.
    pub attach_delays_ns: Vec<u64>,
    /// Peer config -> (records taken, records lost) per round.
    pub peers: BTreeMap<String, Vec<(u64, u64)>>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProgramFigures {
    pub function: String,
    pub forks: u64,
    pub runs: u64,
    pub run_time_ns: u64,
    /// ns per run in each round, for the spread.
    pub ns_per_run: Vec<f64>,
}

impl ProgramFigures {
    pub fn runs_per_fork(&self) -> f64 {
        self.runs as f64 / self.forks.max(1) as f64
    }

    pub fn ns_per_run(&self) -> Option<Spread> {
        Spread::of(&self.ns_per_run)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub round: u32,
    pub attach_ms: u64,
    pub cpu_ms: u64,
    pub ready_rss_kib: u64,
    pub ready_hwm_kib: u64,
    pub vm_rss_kib: u64,
    pub vm_hwm_kib: u64,
    pub records: Option<u64>,
    pub lost: Option<u64>,
}

impl KernelFigures {
    pub fn from_lines(lines: &[Line]) -> KernelFigures {
        let mut k = KernelFigures::default();
        for line in lines {
            match line {
                Line::Guest {
                    release,
                    version,
                    cpus,
                    mem_total_kib,
                    runs,
                    forks,
                    stats_forks,
                } => {
                    k.release.clone_from(release);
                    k.version.clone_from(version);
                    k.cpus = *cpus;
                    k.mem_total_kib = *mem_total_kib;
                    k.runs = *runs;
                    k.forks = *forks;
                    k.stats_forks = *stats_forks;
                }
                Line::Workload {
                    workload,
                    about,
                    pages,
                } => {
                    k.workloads
                        .insert(workload.clone(), (about.clone(), *pages));
                }
                Line::Timing {
                    round,
                    workload,
                    config,
                    fork_ns,
                } => {
                    if let Some(m) = median_of(fork_ns) {
                        k.fork_ns
                            .entry((workload.clone(), config.clone()))
                            .or_default()
                            .insert(*round, m);
                    }
                }
                Line::Program {
                    workload,
                    config,
                    program,
                    function,
                    forks,
                    runs,
                    run_time_ns,
                    ..
                } => {
                    let p = k
                        .programs
                        .entry((workload.clone(), config.clone(), program.clone()))
                        .or_default();
                    p.function.clone_from(function);
                    p.forks += u64::from(*forks);
                    p.runs += runs;
                    p.run_time_ns += run_time_ns;
                    if *runs > 0 {
                        p.ns_per_run.push(*run_time_ns as f64 / *runs as f64);
                    }
                }
                Line::Process {
                    round,
                    config,
                    attach_ms,
                    cpu_ms,
                    ready_rss_kib,
                    ready_hwm_kib,
                    vm_rss_kib,
                    vm_hwm_kib,
                    records,
                    lost,
                } => k
                    .processes
                    .entry(config.clone())
                    .or_default()
                    .push(Process {
                        round: *round,
                        attach_ms: *attach_ms,
                        cpu_ms: *cpu_ms,
                        ready_rss_kib: *ready_rss_kib,
                        ready_hwm_kib: *ready_hwm_kib,
                        vm_rss_kib: *vm_rss_kib,
                        vm_hwm_kib: *vm_hwm_kib,
                        records: *records,
                        lost: *lost,
                    }),
                Line::Map { .. } => k.maps.push(line.clone()),
                Line::Code { .. } => k.code.push(line.clone()),
                Line::Lookups {
                    attach_delay_ns, ..
                } => k.attach_delays_ns.push(*attach_delay_ns),
                Line::Peer {
                    config,
                    records,
                    lost,
                    ..
                } => k
                    .peers
                    .entry(config.clone())
                    .or_default()
                    .push((*records, *lost)),
            }
        }
        k
    }

    /// `over`'s fork time divided by `base`'s, round by round (both
    /// measured in the same round, minutes apart), with the spread.
    pub fn ratio(&self, workload: &str, over: &str, base: &str) -> Option<Spread> {
        let of = |config: &str| self.fork_ns.get(&(workload.to_owned(), config.to_owned()));
        let (over, base) = (of(over)?, of(base)?);
        let ratios: Vec<f64> = over
            .iter()
            .filter_map(|(round, o)| Some(o / base.get(round)?))
            .collect();
        Spread::of(&ratios)
    }

    /// How many times `ours`'s added fork+exit time `peer`'s is, both over
    /// `base` in the same round, with the spread over rounds.
    pub fn cost_ratio(&self, workload: &str, peer: &str, ours: &str, base: &str) -> Option<Spread> {
        let of = |config: &str| self.fork_ns.get(&(workload.to_owned(), config.to_owned()));
        let (peer, ours, base) = (of(peer)?, of(ours)?, of(base)?);
        let ratios: Vec<f64> = peer
            .iter()
            .filter_map(|(round, p)| {
                let b = base.get(round)?;
                let added = ours.get(round)? - b;
                (added > 0.0).then(|| (p - b) / added)
            })
            .collect();
        Spread::of(&ratios)
    }

    /// The median fork+exit time of a configuration, over rounds.
    pub fn fork_time(&self, workload: &str, config: &str) -> Option<Spread> {
        let rounds = self
            .fork_ns
            .get(&(workload.to_owned(), config.to_owned()))?;
        Spread::of(&rounds.values().copied().collect::<Vec<_>>())
    }

    /// The extra time per vm_normal_page call of `over` against `base`:
    /// the difference of the median fork times over the calls one fork
    /// makes (the empty program's run count, which counts exactly them).
    pub fn added_ns_per_call(&self, workload: &str, over: &str, base: &str) -> Option<f64> {
        let calls = self
            .programs
            .iter()
            .find(|((w, c, _), p)| w == workload && c == "empty" && p.function == "vm_normal_page")?
            .1
            .runs_per_fork();
        let over = self.fork_time(workload, over)?.median;
        let base = self.fork_time(workload, base)?.median;
        (calls > 0.0).then(|| (over - base) / calls)
    }

    /// The programs of a configuration on a workload that ran.
    pub fn programs_of<'a>(
        &'a self,
        workload: &'a str,
        config: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a ProgramFigures)> + 'a {
        self.programs
            .iter()
            .filter(move |((w, c, _), _)| w == workload && c == config)
            .map(|((_, _, name), p)| (name.as_str(), p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_ratio_compares_what_each_adds_over_the_base_round_by_round() {
        let k = KernelFigures::from_lines(&[
            timing(0, "pfnmap-fork", "none", &[1000]),
            timing(0, "pfnmap-fork", "run", &[1500]),
            timing(0, "pfnmap-fork", "naive", &[3000]),
            timing(1, "pfnmap-fork", "none", &[2000]),
            timing(1, "pfnmap-fork", "run", &[2400]),
            timing(1, "pfnmap-fork", "naive", &[4400]),
            Line::Peer {
                round: 0,
                config: "naive".into(),
                records: 10,
                lost: 90,
            },
        ]);
        let r = k.cost_ratio("pfnmap-fork", "naive", "run", "none").unwrap();
        assert_eq!((r.min, r.max, r.rounds), (4.0, 6.0, 2));
        // A configuration that added nothing has no ratio, not infinity.
        assert!(
            k.cost_ratio("pfnmap-fork", "naive", "none", "none")
                .is_none()
        );
        assert_eq!(k.peers["naive"], [(10, 90)]);
    }

    fn timing(round: u32, workload: &str, config: &str, ns: &[u64]) -> Line {
        Line::Timing {
            round,
            workload: workload.into(),
            config: config.into(),
            fork_ns: ns.to_vec(),
        }
    }

    fn program(round: u32, config: &str, runs: u64, ns: u64) -> Line {
        Line::Program {
            round,
            workload: "anon-fork".into(),
            config: config.into(),
            program: format!("{config}_prog"),
            function: "vm_normal_page".into(),
            forks: 2,
            runs,
            run_time_ns: ns,
        }
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn ratios_pair_rounds_and_show_their_spread() {
        let lines = [
            // Round 0: the emulator is slow; round 1 fast. The ratio is what
            // matters, so both rounds give 1.5 and 2.0 whatever the speed.
            timing(0, "anon-fork", "none", &[100, 1000, 100]),
            timing(0, "anon-fork", "run", &[150, 150, 9]),
            timing(1, "anon-fork", "none", &[10, 10, 10]),
            timing(1, "anon-fork", "run", &[20, 20, 20]),
            // A round where "run" failed has no pair and is left out.
            timing(2, "anon-fork", "none", &[10]),
        ];
        let k = KernelFigures::from_lines(&lines);
        let r = k.ratio("anon-fork", "run", "none").unwrap();
        assert_eq!((r.median, r.min, r.max, r.rounds), (1.75, 1.5, 2.0, 2));
        assert!(k.ratio("anon-fork", "trace", "none").is_none());
        assert!(k.ratio("pfnmap-fork", "run", "none").is_none());
        let none = k.fork_time("anon-fork", "none").unwrap();
        assert_eq!((none.median, none.min, none.max), (10.0, 10.0, 100.0));
    }

    #[test]
    fn program_runs_add_up_over_rounds() {
        let lines = [
            program(0, "empty", 1000, 50_000),
            program(1, "empty", 1000, 70_000),
            timing(0, "anon-fork", "none", &[1000]),
            timing(0, "anon-fork", "empty", &[2000]),
        ];
        let k = KernelFigures::from_lines(&lines);
        let (name, p) = k.programs_of("anon-fork", "empty").next().unwrap();
        assert_eq!(name, "empty_prog");
        assert_eq!((p.forks, p.runs, p.run_time_ns), (4, 2000, 120_000));
        assert_eq!(p.runs_per_fork(), 500.0);
        let s = p.ns_per_run().unwrap();
        assert_eq!((s.median, s.min, s.max), (60.0, 50.0, 70.0));
        // 1000 ns more per fork over 500 calls a fork.
        assert_eq!(k.added_ns_per_call("anon-fork", "empty", "none"), Some(2.0));
        assert!(k.programs_of("anon-fork", "run").next().is_none());
    }
}
