//! The host half of `cargo xtask bench`: record and replay throughput and
//! replay's peak memory on a generated capture. Pure user space, so it runs
//! on the host (`--host-only` runs nothing else and rewrites only its
//! section of BENCHMARKS.md).
//!
//! `pfnwatch synth-capture` (hidden) writes the capture with pfnwatch's own
//! writer, records through the rules and filters as `record` feeds them, and
//! reports its own throughput; replay is then timed as a whole process,
//! output to /dev/null, with the kernel's accounting of it as GNU time
//! reports it (CPU time and peak RSS). Each figure is the median of
//! [`RUNS`] runs.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use super::host::Machine;

/// Records in the generated capture.
pub const RECORDS: u64 = 1_000_000;
/// Runs of each measurement; the median is reported.
pub const RUNS: usize = 3;

/// What `pfnwatch synth-capture` prints.
#[derive(Debug, Clone, Deserialize)]
pub struct Written {
    pub records: u64,
    pub bytes: u64,
    /// Records over the loop's CPU time: one core's rate.
    pub records_per_cpu_second: f64,
}

/// One replay run, from the kernel's accounting of the child.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub cpu_secs: f64,
    pub wall_secs: f64,
    pub max_rss_kib: u64,
}

/// A replay configuration's median run.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub label: &'static str,
    pub args: Vec<String>,
    pub run: Run,
}

#[derive(Debug, Clone)]
pub struct ReplayFigures {
    pub machine: Machine,
    /// Records through rules and filters into the writer.
    pub record: Written,
    /// The writer alone.
    pub writer: Written,
    pub gzip_bytes: u64,
    pub replays: Vec<Replayed>,
}

/// The capture's replays: what each shows of it.
const CONFIGS: [(&str, &[&str]); 5] = [
    ("text, every record printed", &[]),
    ("JSON, every record printed", &["--json"]),
    (
        "`--severity critical`: the filter drops all but 0.5 %",
        &["--severity", "critical"],
    ),
    (
        "`--comm nobody`: the filter drops every record",
        &["--comm", "nobody"],
    ),
    ("text, from the gzip-compressed capture", &[]),
];

pub fn measure(pfnwatch: &Path, dir: &Path) -> Result<ReplayFigures> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let capture = dir.join("bench.capture");
    let writer_only = dir.join("bench-writer.capture");
    println!("[host] generating {RECORDS} records with pfnwatch synth-capture");
    let record = median_written(pfnwatch, &capture, false)?;
    let writer = median_written(pfnwatch, &writer_only, true)?;
    std::fs::remove_file(&writer_only).ok();
    let gz = dir.join("bench.capture.gz");
    gzip(&capture, &gz)?;
    let gzip_bytes = std::fs::metadata(&gz)?.len();
    let mut replays = Vec::new();
    for (i, (label, args)) in CONFIGS.iter().enumerate() {
        let file = if i == CONFIGS.len() - 1 {
            &gz
        } else {
            &capture
        };
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            runs.push(replay(pfnwatch, file, args)?);
        }
        runs.sort_by(|a, b| a.cpu_secs.total_cmp(&b.cpu_secs));
        let run = runs[runs.len() / 2];
        println!(
            "[host] replay {label}: {:.0} records/s per core, {} KiB peak",
            RECORDS as f64 / run.cpu_secs,
            run.max_rss_kib
        );
        replays.push(Replayed {
            label,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            run,
        });
    }
    std::fs::remove_file(&gz).ok();
    std::fs::remove_file(&capture).ok();
    Ok(ReplayFigures {
        machine: Machine::read(),
        record,
        writer,
        gzip_bytes,
        replays,
    })
}

fn median_written(pfnwatch: &Path, file: &Path, writer_only: bool) -> Result<Written> {
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let mut command = Command::new(pfnwatch);
        command
            .arg("synth-capture")
            .arg(file)
            .args(["--records", &RECORDS.to_string()]);
        if writer_only {
            command.arg("--writer-only");
        }
        let out = command
            .output()
            .with_context(|| format!("running {}", pfnwatch.display()))?;
        if !out.status.success() {
            bail!(
                "pfnwatch synth-capture: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let written: Written = serde_json::from_slice(&out.stdout)
            .context("reading what pfnwatch synth-capture printed")?;
        runs.push(written);
    }
    runs.sort_by(|a, b| {
        a.records_per_cpu_second
            .total_cmp(&b.records_per_cpu_second)
    });
    Ok(runs.swap_remove(runs.len() / 2))
}

fn gzip(from: &Path, to: &Path) -> Result<()> {
    let mut input = File::open(from).with_context(|| format!("reading {}", from.display()))?;
    let out = File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    std::io::copy(&mut input, &mut enc)
        .with_context(|| format!("compressing {}", from.display()))?;
    enc.finish()?.flush()?;
    Ok(())
}

/// Measures a command's CPU time and peak RSS: GNU time, whose own
/// resident set is small. (wait4's rusage from xtask itself would not do:
/// a child spawned with vfork semantics keeps the parent's resident set as
/// its high-water mark across exec.)
const TIME: &str = "/usr/bin/time";

/// `pfnwatch replay FILE ARGS > /dev/null` under [`TIME`].
fn replay(pfnwatch: &Path, file: &Path, args: &[&str]) -> Result<Run> {
    if !Path::new(TIME).is_file() {
        bail!("{TIME} is missing: apt-get install time");
    }
    let figures = file.with_extension("time");
    let out = Command::new(TIME)
        .args(["-f", "%U %S %e %M", "-o"])
        .arg(&figures)
        .arg(pfnwatch)
        .arg("replay")
        .arg(file)
        .args(args)
        .stdout(Stdio::null())
        .output()
        .with_context(|| format!("running {TIME} {}", pfnwatch.display()))?;
    if !out.status.success() {
        bail!(
            "pfnwatch replay {} {}: {}: {}",
            file.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = std::fs::read_to_string(&figures)
        .with_context(|| format!("reading {}", figures.display()))?;
    std::fs::remove_file(&figures).ok();
    parse_time(&text).with_context(|| format!("{TIME} printed {text:?}"))
}

/// "user system elapsed maxrss_kib" (the last line: time puts a note on a
/// signal or exit status before it).
fn parse_time(text: &str) -> Option<Run> {
    let line = text.lines().last()?;
    let mut fields = line.split_whitespace();
    let mut next = || fields.next()?.parse::<f64>().ok();
    let (user, system, wall, rss) = (next()?, next()?, next()?, next()?);
    Some(Run {
        cpu_secs: user + system,
        wall_secs: wall,
        max_rss_kib: rss as u64,
    })
}

/// The BENCHMARKS.md section's heading: `--host-only` replaces from it to
/// the next heading of its level.
pub const HEADING: &str = "## Replay and record (host, no VM)";

pub fn section(md: &mut String, f: &ReplayFigures) {
    let m = &f.machine;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let _ = writeln!(md, "{HEADING}\n");
    let _ = writeln!(
        md,
        "Measured on the host itself, {} ({} cores, {}), Linux {}, on {} (UTC): \
         no emulation, so these are real seconds on a shared machine. A capture of \
         {} made-up records (`pfnwatch synth-capture`, hidden: the mix `record --all` \
         sees, 80 % lookups in shared PFNMAPs that break no rule, 3 % rule hits, 64 \
         processes, 12 call paths): {:.1} MiB, {:.0} bytes a record; gzip-compressed \
         {:.1} MiB. Medians of {RUNS} runs.\n",
        m.cpu_model,
        m.cpus,
        super::render::gib(m.mem_total_kib),
        m.kernel,
        m.date,
        f.record.records,
        mib(f.record.bytes),
        f.record.bytes as f64 / f.record.records.max(1) as f64,
        mib(f.gzip_bytes),
    );
    let _ = writeln!(
        md,
        "| record side (`pfnwatch synth-capture`, its loop's CPU time) | records/s per core |\n|---|---:|"
    );
    let _ = writeln!(
        md,
        "| rules, filters and the capture writer (what `record` does after the ring buffer) | {:.0} |",
        f.record.records_per_cpu_second
    );
    let _ = writeln!(
        md,
        "| the capture writer alone | {:.0} |\n",
        f.writer.records_per_cpu_second
    );
    let _ = writeln!(
        md,
        "`pfnwatch replay` of the capture, output to /dev/null; records/s per core is \
         the records over the process's CPU time (user + system), peak RSS the kernel's \
         (GNU time's %M):\n"
    );
    let _ = writeln!(
        md,
        "| replay | arguments | records/s per core | CPU s | wall s | peak RSS |\n|---|---|---:|---:|---:|---:|"
    );
    for r in &f.replays {
        let _ = writeln!(
            md,
            "| {} | `{}` | {:.0} | {:.2} | {:.2} | {:.1} MiB |",
            r.label,
            if r.args.is_empty() {
                "(none)".to_owned()
            } else {
                r.args.join(" ")
            },
            f.record.records as f64 / r.run.cpu_secs.max(1e-9),
            r.run.cpu_secs,
            r.run.wall_secs,
            r.run.max_rss_kib as f64 / 1024.0
        );
    }
    let _ = writeln!(md);
}

/// `md` with [`HEADING`]'s section replaced by `section` (or, absent,
/// put before the method, or at the end).
pub fn splice(md: &str, section: &str) -> String {
    if let Some(start) = md.find(HEADING) {
        let rest = &md[start + HEADING.len()..];
        let end = rest
            .find("\n## ")
            .map_or(md.len(), |i| start + HEADING.len() + i + 1);
        return format!("{}{section}{}", &md[..start], &md[end..]);
    }
    match md.find("## Method") {
        Some(at) => format!("{}{section}{}", &md[..at], &md[at..]),
        None => format!("{md}\n{section}"),
    }
}

/// Where the capture is made: the target directory, not /tmp (a million
/// records are 90 MB).
pub fn work_dir(root: &Path) -> PathBuf {
    root.join("target").join("bench-replay")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gnu_times_figures() {
        assert_eq!(
            parse_time("1.02 0.03 1.10 6480\n"),
            Some(Run {
                cpu_secs: 1.05,
                wall_secs: 1.10,
                max_rss_kib: 6480
            })
        );
        assert_eq!(
            parse_time("Command exited with non-zero status 1\n0.5 0.0 0.6 100\n")
                .map(|r| r.max_rss_kib),
            Some(100)
        );
        assert_eq!(parse_time("garbage\n"), None);
    }

    #[test]
    fn the_section_replaces_its_own_and_nothing_else() {
        let old = "# t\n\n## Summary\n\nx\n\n## Replay and record (host, no VM)\n\nold\n\n## Method\n\nm\n";
        let new = format!("{HEADING}\n\nnew\n\n");
        assert_eq!(
            splice(old, &new),
            "# t\n\n## Summary\n\nx\n\n## Replay and record (host, no VM)\n\nnew\n\n## Method\n\nm\n"
        );
        let without = "# t\n\n## Summary\n\nx\n\n## Method\n\nm\n";
        assert_eq!(
            splice(without, &new),
            "# t\n\n## Summary\n\nx\n\n## Replay and record (host, no VM)\n\nnew\n\n## Method\n\nm\n"
        );
        assert_eq!(splice("# t\n", &new), format!("# t\n\n{new}"));
        // Last in the file: replaced to the end.
        let last = format!("# t\n\n{HEADING}\n\nold\n");
        assert_eq!(splice(&last, &new), format!("# t\n\n{new}"));
    }
}
