//! Bench result lines (`pfnwatch-bench: <json>`): the guest prints one
//! per reading with [`print`], the host reads them with [`parse`].

use serde::{Deserialize, Serialize};

/// Where the bench's initramfs holds bpftrace (`bpftrace`), its dynamic
/// loader (`ld.so`) and its libraries (`lib/`), for the peer column.
pub const BPFTRACE_DIR: &str = "/opt/bpftrace";

/// Searched for anywhere in a console line: a printk can land in front.
pub const MARKER: &str = "pfnwatch-bench: ";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Line {
    Guest {
        release: String,
        version: String,
        cpus: usize,
        mem_total_kib: u64,
        runs: u32,
        forks: u32,
        stats_forks: u32,
    },
    Workload {
        workload: String,
        about: String,
        pages: u64,
    },
    Timing {
        round: u32,
        workload: String,
        config: String,
        fork_ns: Vec<u64>,
    },
    Program {
        round: u32,
        workload: String,
        config: String,
        program: String,
        function: String,
        forks: u32,
        runs: u64,
        run_time_ns: u64,
    },
    Process {
        round: u32,
        config: String,
        attach_ms: u64,
        cpu_ms: u64,
        ready_rss_kib: u64,
        ready_hwm_kib: u64,
        vm_rss_kib: u64,
        vm_hwm_kib: u64,
        /// trace only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        records: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lost: Option<u64>,
    },
    Map {
        config: String,
        name: String,
        map_type: String,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        memlock: u64,
    },
    Code {
        config: String,
        program: String,
        jited_bytes: u32,
        memlock: u64,
    },
    /// `pfnwatch run` with the lookups on demand attached them for a
    /// device mapping `attach_delay_ns` of guest time after its mmap.
    Lookups { round: u32, attach_delay_ns: u64 },
    /// A peer tracer's records over a round's workloads: taken from its
    /// ring buffer, and lost to a full one.
    Peer {
        round: u32,
        config: String,
        records: u64,
        lost: u64,
    },
}

/// The console line for `line`.
pub fn print(line: &Line) -> String {
    // Plain strings and numbers: serialising cannot fail.
    let json = serde_json::to_string(line).unwrap_or_default();
    format!("{MARKER}{json}")
}

/// `None` for a console line that is no result line; an error for one
/// that is but does not parse (a guest/host mismatch worth failing on).
pub fn parse(line: &str) -> Option<Result<Line, String>> {
    let (_, json) = line.split_once(MARKER)?;
    let json = json.trim();
    Some(serde_json::from_str(json).map_err(|e| format!("bad bench line {json:?}: {e}")))
}

/// Lines as a guest printed them in a real run (6.12, two rounds; the
/// run-mapped and lookups lines from a later 6.12 run, the naive and
/// bpftrace peers' from a 7.2 run), for
/// the host's and the guest's tests.
pub const FIXTURE: &str = include_str!("testdata/guest-lines.txt");

/// [`FIXTURE`], parsed; a line that does not parse is left out (the tests
/// here check there is none).
pub fn fixture_lines() -> Vec<Line> {
    FIXTURE.lines().filter_map(|l| parse(l)?.ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guests_fixture_parses_whole() {
        let lines = fixture_lines();
        assert_eq!(lines.len(), FIXTURE.lines().count());
        assert!(matches!(
            &lines[0],
            Line::Guest {
                runs: 2,
                forks: 5,
                ..
            }
        ));
    }

    #[test]
    fn every_line_prints_as_it_parses() {
        for line in fixture_lines() {
            let printed = print(&line);
            assert_eq!(parse(&printed).unwrap().unwrap(), line, "{printed}");
        }
        // The fixture's bytes are what print writes.
        for text in FIXTURE.lines() {
            let line = parse(text).unwrap().unwrap();
            assert_eq!(print(&line), text);
        }
    }

    #[test]
    fn parses_each_kind_and_ignores_other_lines() {
        let timing = parse(
            "[ 12.3] pfnwatch-bench: {\"kind\":\"timing\",\"round\":1,\"workload\":\"anon-fork\",\
             \"config\":\"run\",\"fork_ns\":[5,7,6]}\r",
        );
        assert_eq!(
            timing.map(Result::ok),
            Some(Some(Line::Timing {
                round: 1,
                workload: "anon-fork".into(),
                config: "run".into(),
                fork_ns: vec![5, 7, 6],
            }))
        );
        // records/lost are only there for trace.
        let run = parse(
            "pfnwatch-bench: {\"kind\":\"process\",\"round\":0,\"config\":\"run\",\"attach_ms\":900,\
             \"cpu_ms\":0,\"ready_rss_kib\":8000,\"ready_hwm_kib\":9500,\"vm_rss_kib\":9000,\"vm_hwm_kib\":9500}",
        );
        let Some(Ok(Line::Process { records, lost, .. })) = run else {
            panic!("{run:?}");
        };
        assert_eq!((records, lost), (None, None));
        assert!(parse("pfnwatch-vmtest: PASS bench/done: 3 rounds").is_none());
        assert!(parse("[ 1.0] Run /init as init process").is_none());
        let bad = parse("pfnwatch-bench: {\"kind\":\"timing\",\"round\":1}");
        assert!(matches!(bad, Some(Err(_))), "{bad:?}");
        let unknown = parse("pfnwatch-bench: {\"kind\":\"nonsense\"}");
        assert!(matches!(unknown, Some(Err(_))), "{unknown:?}");
    }
}
