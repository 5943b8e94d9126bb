//! The guest's side of a VM test, as seen on the serial console.
//!
//! The guest init prints `pfnwatch-vmtest: PASS <check>[: <detail>]`,
//! `pfnwatch-vmtest: FAIL <check>: <reason>`, `pfnwatch-vmtest: INFO <text>`,
//! files as `pfnwatch-vmtest: FILE ...` lines (guest_files.rs) and finally
//! `pfnwatch-vmtest: verdict success|failure`. Everything else on the
//! console is kernel or program output, of which only panics and oopses matter.

use std::fmt;

pub use pfnwatch_testbed_protocol::checks::{GuestLine, MARKER, Verdict, parse_line};
use pfnwatch_testbed_protocol::files::GuestFiles;

/// Kernel trouble that makes a run fail whatever the guest says afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelTrouble {
    Panic,
    /// An oops or BUG: the kernel survived, but a test must not cause one.
    Oops,
}

/// How print_bad_pte() (6.1, 6.12) and print_bad_page_map() (7.x) start their
/// report. The kernel carries on (it clears the pte) and the bad-driver
/// module makes one on purpose; pfnwatch hooks the report, and the guest
/// judges whether it was expected.
const BAD_PAGE_MAP: &str = "BUG: Bad page map";

/// Recognises a kernel panic or oops on a console line. Protocol lines are never
/// trouble, so a check named after a panic cannot fail a run by its name; nor is
/// a bad page map report (see [`BAD_PAGE_MAP`]).
pub fn kernel_trouble(line: &str) -> Option<KernelTrouble> {
    if line.contains(MARKER) || line.contains(BAD_PAGE_MAP) {
        return None;
    }
    if line.contains("Kernel panic") {
        return Some(KernelTrouble::Panic);
    }
    const OOPS: [&str; 4] = [
        "BUG: ",
        "kernel BUG at ",
        "Oops: ",
        "general protection fault",
    ];
    OOPS.iter()
        .any(|needle| line.contains(needle))
        .then_some(KernelTrouble::Oops)
}

/// One check's result, as counted in the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub name: String,
    /// `None` when the check passed.
    pub failure: Option<String>,
}

/// How the VM stopped, as far as the test verdict is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootEnd {
    /// qemu exited on its own (power-off, or a panic with `panic=-1 -no-reboot`).
    Exited(String),
    /// The whole boot took longer than the timeout.
    TimedOut { secs: u64 },
    /// The guest gave its verdict (or panicked) but qemu did not exit afterwards.
    Lingered,
}

impl fmt::Display for BootEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootEnd::Exited(status) => write!(f, "qemu exited, {status}"),
            BootEnd::TimedOut { secs } => write!(f, "killed after the {secs} s timeout"),
            BootEnd::Lingered => write!(f, "killed: qemu did not exit after the guest finished"),
        }
    }
}

/// Accumulates what one kernel's guest reported.
#[derive(Debug, Default)]
pub struct GuestRun {
    checks: Vec<CheckResult>,
    verdict: Option<Verdict>,
    panic: Option<String>,
    oopses: Vec<String>,
    files: GuestFiles,
}

/// What the host should do after a console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// A line to print on the host's terminal, if any (PASS/FAIL/INFO, trouble).
    pub echo: Option<String>,
    /// The guest is done (verdict or panic): qemu should exit soon.
    pub finished: bool,
}

impl GuestRun {
    /// Feeds one console line.
    pub fn observe(&mut self, line: &str) -> Observed {
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(parsed) = parse_line(line) {
            return self.observe_protocol(parsed);
        }
        match kernel_trouble(line) {
            Some(KernelTrouble::Panic) => {
                // Keep the first panic line: later ones are usually its trace.
                self.panic.get_or_insert_with(|| line.trim().to_owned());
                Observed {
                    echo: Some(format!("KERNEL PANIC {}", line.trim())),
                    finished: true,
                }
            }
            Some(KernelTrouble::Oops) => {
                self.oopses.push(line.trim().to_owned());
                Observed {
                    echo: Some(format!("KERNEL OOPS {}", line.trim())),
                    finished: false,
                }
            }
            None => Observed {
                echo: None,
                finished: false,
            },
        }
    }

    fn observe_protocol(&mut self, parsed: GuestLine<'_>) -> Observed {
        let (echo, finished) = match parsed {
            GuestLine::Pass { check, detail } => {
                self.checks.push(CheckResult {
                    name: check.to_owned(),
                    failure: None,
                });
                let echo = if detail.is_empty() {
                    format!("PASS {check}")
                } else {
                    format!("PASS {check}: {detail}")
                };
                (echo, false)
            }
            GuestLine::Fail { check, reason } => {
                self.checks.push(CheckResult {
                    name: check.to_owned(),
                    failure: Some(reason.to_owned()),
                });
                (format!("FAIL {check}: {reason}"), false)
            }
            GuestLine::Info(text) => (format!("INFO {text}"), false),
            GuestLine::File(file) => {
                return Observed {
                    echo: self.files.observe(file),
                    finished: false,
                };
            }
            GuestLine::Verdict(verdict) => {
                self.verdict.get_or_insert(verdict);
                let word = match verdict {
                    Verdict::Success => "success",
                    Verdict::Failure => "failure",
                };
                (format!("verdict {word}"), true)
            }
            GuestLine::Unrecognised(text) => (format!("UNRECOGNISED {MARKER}{text}"), false),
        };
        Observed {
            echo: Some(echo),
            finished,
        }
    }

    /// The files the guest sent, taken out of the run.
    pub fn take_files(&mut self) -> GuestFiles {
        std::mem::take(&mut self.files)
    }

    /// How many PASS/FAIL lines the guest printed so far.
    pub fn reported(&self) -> usize {
        self.checks.len()
    }

    /// Closes the run: the guest's checks plus synthetic failed checks for whatever
    /// went wrong around them (no verdict, panic, oops, a failure verdict with no FAIL).
    pub fn finish(self, end: &BootEnd) -> Vec<CheckResult> {
        let mut checks = self.checks;
        let guest_failed = checks.iter().any(|check| check.failure.is_some());
        let mut fail = |name: &str, reason: String| {
            checks.push(CheckResult {
                name: name.to_owned(),
                failure: Some(reason),
            })
        };
        if let Some(panic) = &self.panic {
            fail("kernel-panic", panic.clone());
        }
        for oops in self.oopses {
            fail("kernel-oops", oops);
        }
        match self.verdict {
            None if self.panic.is_none() => {
                let reason = match end {
                    BootEnd::Exited(status) => format!("qemu exited ({status}) without a verdict"),
                    BootEnd::TimedOut { secs } => format!("no verdict within {secs} s"),
                    BootEnd::Lingered => "no verdict".to_owned(),
                };
                fail("boot", reason);
            }
            // The panic already counts as the failure of this boot.
            None => {}
            Some(Verdict::Failure) if !guest_failed => fail(
                "verdict",
                "guest reported failure without a FAIL line".to_owned(),
            ),
            // A failure verdict is already counted through the guest's FAIL lines.
            Some(Verdict::Failure | Verdict::Success) => {}
        }
        checks
    }
}

/// Counts over all kernels; its `Display` is the last line of `vm-test`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

impl Summary {
    pub fn add(&mut self, checks: &[CheckResult]) {
        for check in checks {
            match check.failure {
                None => self.passed += 1,
                Some(_) => self.failed += 1,
            }
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lines_are_collected_quietly_and_checked_at_the_end() {
        let mut guest = GuestRun::default();
        let chunk = guest.observe("pfnwatch-vmtest: FILE cap 0 QUJD\r");
        assert_eq!(chunk.echo, None, "chunks are not echoed");
        let end = guest.observe("[ 9.0] pfnwatch-vmtest: FILE cap END 1 3 a3830348\r");
        assert_eq!(end.echo.as_deref(), Some("FILE cap: 3 bytes received"));
        assert!(!end.finished);
        let bad = guest.observe("pfnwatch-vmtest: FILE ../etc 0 QUJD");
        assert_eq!(
            bad.echo.as_deref(),
            Some("UNRECOGNISED pfnwatch-vmtest: FILE ../etc 0 QUJD")
        );
        let (files, failed) = guest.take_files().finish();
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(files["cap"], b"ABC");
        assert_eq!(guest.reported(), 0, "files are not checks");
    }

    #[test]
    fn detects_panics_and_oopses_but_not_in_protocol_lines() {
        assert_eq!(
            kernel_trouble(
                "[    2.5] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"
            ),
            Some(KernelTrouble::Panic)
        );
        assert_eq!(
            kernel_trouble(
                "[    9.1] BUG: kernel NULL pointer dereference, address: 0000000000000008"
            ),
            Some(KernelTrouble::Oops)
        );
        assert_eq!(
            kernel_trouble("[    9.1] kernel BUG at mm/memory.c:2260!"),
            Some(KernelTrouble::Oops)
        );
        assert_eq!(kernel_trouble("[    0.0] Linux version 6.12.117"), None);
        assert_eq!(
            kernel_trouble("pfnwatch-vmtest: PASS no-Kernel panic-on-fork"),
            None
        );
    }

    /// The console lines of a bad page map report as 6.1 and 7.2 print them
    /// at loglevel=4 (the stack dump is below it), from the bad-driver module.
    const BAD_PAGE_MAP_6_1: [&str; 4] = [
        "[    6.422532] BUG: Bad page map in process badtest  pte:80000000fd000237 pmd:3fcd9067",
        "[    6.424056] addr:00007f813fee5000 vm_flags:0c0440fb anon_vma:0000000000000000 mapping:ff32768cc22e0518 index:0",
        "[    6.424542] file:pfnw-bad-page-map fault:sigbus_fault [pfnwatch_badmod] mmap:bad_page_map_mmap [pfnwatch_badmod] read_folio:0x0",
        "[   70.100000] BUG: Bad page map: 3 messages suppressed",
    ];
    const BAD_PAGE_MAP_7_2: [&str; 2] = [
        "[   24.912171] BUG: Bad page map in process badtest  pte:80000000fd000237",
        "[   24.912390] pgd:02d75067 p4d:02e6f067 pud:02d74067 pmd:02e6c067",
    ];

    #[test]
    fn a_bad_page_map_report_is_not_an_oops() {
        for line in BAD_PAGE_MAP_6_1.iter().chain(&BAD_PAGE_MAP_7_2) {
            assert_eq!(kernel_trouble(line), None, "{line}");
        }
        // Other BUG reports still are.
        assert_eq!(
            kernel_trouble("[    9.0] BUG: Bad page state in process badtest  pfn:02801"),
            Some(KernelTrouble::Oops)
        );
    }

    #[test]
    fn a_run_with_a_bad_page_map_report_passes() {
        let mut lines = vec!["pfnwatch-vmtest: PASS module/load"];
        lines.extend(BAD_PAGE_MAP_6_1);
        lines.extend(BAD_PAGE_MAP_7_2);
        lines.push("pfnwatch-vmtest: verdict success");
        let checks = run(&lines, exited());
        let mut summary = Summary::default();
        summary.add(&checks);
        assert_eq!(
            summary,
            Summary {
                passed: 1,
                failed: 0
            },
            "{checks:?}"
        );
    }

    fn run(lines: &[&str], end: BootEnd) -> Vec<CheckResult> {
        let mut guest = GuestRun::default();
        for line in lines {
            guest.observe(line);
        }
        guest.finish(&end)
    }

    fn exited() -> BootEnd {
        BootEnd::Exited("exit status: 0".to_owned())
    }

    #[test]
    fn clean_run_counts_every_check() {
        let checks = run(
            &[
                "[    0.0] Linux version 6.1.176",
                "pfnwatch-vmtest: PASS a\r",
                "pfnwatch-vmtest: FAIL b: wrong pfn\r",
                "pfnwatch-vmtest: verdict failure\r",
            ],
            exited(),
        );
        let mut summary = Summary::default();
        summary.add(&checks);
        assert_eq!(
            summary,
            Summary {
                passed: 1,
                failed: 1
            }
        );
        assert_eq!(checks[1].name, "b");
        assert_eq!(checks[1].failure.as_deref(), Some("wrong pfn"));
    }

    #[test]
    fn pass_detail_is_echoed_but_not_part_of_the_name() {
        let mut guest = GuestRun::default();
        let seen = guest.observe("pfnwatch-vmtest: PASS idle/quiet: 0 records\r");
        assert_eq!(seen.echo.as_deref(), Some("PASS idle/quiet: 0 records"));
        let checks = guest.finish(&BootEnd::Lingered);
        assert_eq!(checks[0].name, "idle/quiet");
        assert_eq!(checks[0].failure, None);
    }

    #[test]
    fn verdict_marks_the_guest_finished() {
        let mut guest = GuestRun::default();
        assert!(!guest.observe("pfnwatch-vmtest: PASS a").finished);
        let seen = guest.observe("pfnwatch-vmtest: verdict success\r");
        assert!(seen.finished);
        assert_eq!(seen.echo.as_deref(), Some("verdict success"));
        let checks = guest.finish(&exited());
        assert!(checks.iter().all(|check| check.failure.is_none()));
    }

    #[test]
    fn missing_verdict_is_one_failed_boot_check() {
        let checks = run(&["pfnwatch-vmtest: PASS a"], exited());
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[1].name, "boot");
        assert_eq!(
            checks[1].failure.as_deref(),
            Some("qemu exited (exit status: 0) without a verdict")
        );

        let checks = run(&[], BootEnd::TimedOut { secs: 300 });
        assert_eq!(checks.len(), 1);
        assert_eq!(
            checks[0].failure.as_deref(),
            Some("no verdict within 300 s")
        );
    }

    #[test]
    fn panic_fails_even_after_a_success_verdict() {
        let checks = run(
            &[
                "pfnwatch-vmtest: PASS a",
                "pfnwatch-vmtest: verdict success",
                "[    5.0] Kernel panic - not syncing: Attempted to kill init!",
                "[    5.0] Kernel panic - not syncing: second",
            ],
            exited(),
        );
        let failed: Vec<_> = checks.iter().filter(|c| c.failure.is_some()).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].name, "kernel-panic");
        assert!(
            failed[0]
                .failure
                .as_deref()
                .is_some_and(|reason| reason.contains("Attempted to kill init"))
        );
    }

    #[test]
    fn panic_without_verdict_is_counted_once() {
        let checks = run(
            &["[    1.0] Kernel panic - not syncing: No working init found."],
            exited(),
        );
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].name, "kernel-panic");
    }

    #[test]
    fn failure_verdict_without_fail_lines_still_fails() {
        let checks = run(
            &[
                "pfnwatch-vmtest: PASS a",
                "pfnwatch-vmtest: verdict failure",
            ],
            exited(),
        );
        let mut summary = Summary::default();
        summary.add(&checks);
        assert_eq!(
            summary,
            Summary {
                passed: 1,
                failed: 1
            }
        );
        assert_eq!(checks[1].name, "verdict");
    }

    #[test]
    fn oops_fails_the_run() {
        let checks = run(
            &[
                "[    4.0] BUG: unable to handle page fault for address: ffff",
                "pfnwatch-vmtest: PASS a",
                "pfnwatch-vmtest: verdict success",
            ],
            exited(),
        );
        let mut summary = Summary::default();
        summary.add(&checks);
        assert_eq!(
            summary,
            Summary {
                passed: 1,
                failed: 1
            }
        );
        assert_eq!(checks[1].name, "kernel-oops");
    }

    #[test]
    fn summary_line_format() {
        let summary = Summary {
            passed: 31,
            failed: 2,
        };
        assert_eq!(summary.to_string(), "31 passed, 2 failed");
        assert_eq!(Summary::default().to_string(), "0 passed, 0 failed");
    }
}
