//! The machine the benchmark ran on: what BENCHMARKS.md must say before
//! any figure, since every figure is an emulated one.

use std::{
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use crate::arch::Arch;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub mem_total_kib: u64,
    pub kernel: String,
    pub qemu: String,
    /// UTC, YYYY-MM-DD.
    pub date: String,
}

impl Machine {
    /// Reads /proc and asks qemu; what cannot be read says so.
    pub fn read() -> Machine {
        let file = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = file("/proc/cpuinfo");
        let qemu = Command::new(Arch::X86_64.qemu())
            .arg("--version")
            .output()
            .ok()
            .and_then(|out| {
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                Some(text.lines().next()?.trim().to_owned())
            })
            .unwrap_or_else(|| format!("unknown ({} --version failed)", Arch::X86_64.qemu()));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Machine {
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".to_owned()),
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            mem_total_kib: mem_total_kib(&file("/proc/meminfo")).unwrap_or(0),
            kernel: file("/proc/sys/kernel/osrelease").trim().to_owned(),
            qemu,
            date: civil_date(now / 86_400),
        }
    }
}

pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Days since 1970-01-01 as a proleptic Gregorian date (Howard Hinnant's
/// civil_from_days), so no date crate is needed for one line.
pub fn civil_date(days: u64) -> String {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_date(0), "1970-01-01");
        // 2000-02-29, a leap day of a century year divisible by 400.
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(11_017), "2000-03-01");
        assert_eq!(civil_date(19_723), "2024-01-01");
        assert_eq!(civil_date(20_000 + 454), "2026-01-01");
    }

    #[test]
    fn reads_cpu_model_and_memory() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\
                       processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor\t: 0\n"), None);
        let meminfo = "MemTotal:       24576000 kB\nMemFree:        100 kB\n";
        assert_eq!(mem_total_kib(meminfo), Some(24_576_000));
    }
}
