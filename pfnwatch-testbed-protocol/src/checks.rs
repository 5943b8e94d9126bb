//! Checks: the guest's PASS/FAIL/INFO lines and its verdict.

use crate::files::{self, FileLine};

/// Prefix of every protocol line. Searched for anywhere in a console line, because
/// a printk can land on the same line as the guest's output.
pub const MARKER: &str = "pfnwatch-vmtest: ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure,
}

/// One protocol line from the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestLine<'a> {
    /// `PASS <check>` or `PASS <check>: <detail>` (the detail is only shown).
    Pass {
        check: &'a str,
        detail: &'a str,
    },
    Fail {
        check: &'a str,
        reason: &'a str,
    },
    Info(&'a str),
    /// A piece of a file the guest sends (guest_files.rs).
    File(FileLine<'a>),
    Verdict(Verdict),
    /// Carries the marker but is none of the above: a guest bug worth showing.
    Unrecognised(&'a str),
}

/// Parses one console line; `None` when it is not a protocol line.
pub fn parse_line(line: &str) -> Option<GuestLine<'_>> {
    let (_, rest) = line.split_once(MARKER)?;
    // The serial console ends lines with "\r\n"; a stray '\r' may also sit elsewhere.
    let rest = rest.trim_matches(|c: char| c == '\r' || c.is_whitespace());
    let parsed = if let Some(body) = rest.strip_prefix("PASS ") {
        let (check, detail) = body.split_once(':').unwrap_or((body, ""));
        GuestLine::Pass {
            check: check.trim(),
            detail: detail.trim(),
        }
    } else if let Some(body) = rest.strip_prefix("FAIL ") {
        let (check, reason) = body.split_once(':').unwrap_or((body, ""));
        GuestLine::Fail {
            check: check.trim(),
            reason: reason.trim(),
        }
    } else if let Some(text) = rest.strip_prefix("INFO") {
        GuestLine::Info(text.trim())
    } else if let Some(file) = rest.strip_prefix("FILE ").and_then(files::parse) {
        GuestLine::File(file)
    } else if rest == "verdict success" {
        GuestLine::Verdict(Verdict::Success)
    } else if rest == "verdict failure" {
        GuestLine::Verdict(Verdict::Failure)
    } else {
        GuestLine::Unrecognised(rest)
    };
    Some(parsed)
}

/// `pfnwatch-vmtest: PASS <check>: <detail>`.
pub fn pass_line(check: &str, detail: &str) -> String {
    format!("{MARKER}PASS {check}: {detail}")
}

/// `pfnwatch-vmtest: FAIL <check>: <reason>`.
pub fn fail_line(check: &str, reason: &str) -> String {
    format!("{MARKER}FAIL {check}: {reason}")
}

/// `pfnwatch-vmtest: INFO <text>` (one line; the caller splits).
pub fn info_line(text: &str) -> String {
    format!("{MARKER}INFO {text}")
}

/// `pfnwatch-vmtest: verdict success|failure`.
pub fn verdict_line(verdict: Verdict) -> String {
    let word = match verdict {
        Verdict::Success => "success",
        Verdict::Failure => "failure",
    };
    format!("{MARKER}verdict {word}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_guest_writes_the_host_reads() {
        assert_eq!(
            parse_line(&pass_line("devmem-shared/remap", "1 call")),
            Some(GuestLine::Pass {
                check: "devmem-shared/remap",
                detail: "1 call"
            })
        );
        assert_eq!(
            parse_line(&fail_line("cow/fork", "saw 0")),
            Some(GuestLine::Fail {
                check: "cow/fork",
                reason: "saw 0"
            })
        );
        assert_eq!(
            parse_line(&info_line("kernel 6.12")),
            Some(GuestLine::Info("kernel 6.12"))
        );
        for v in [Verdict::Success, Verdict::Failure] {
            assert_eq!(parse_line(&verdict_line(v)), Some(GuestLine::Verdict(v)));
        }
        for line in crate::files::encode("cap", b"ABC") {
            assert!(
                matches!(parse_line(&line), Some(GuestLine::File(_))),
                "{line}"
            );
        }
    }

    #[test]
    fn parses_pass_fail_info_and_verdicts() {
        assert_eq!(
            parse_line("pfnwatch-vmtest: PASS devmem-shared/remap\r"),
            Some(GuestLine::Pass {
                check: "devmem-shared/remap",
                detail: ""
            })
        );
        assert_eq!(
            parse_line("pfnwatch-vmtest: PASS check/btf: BTF \"/sys/kernel/btf/vmlinux\"\r"),
            Some(GuestLine::Pass {
                check: "check/btf",
                detail: "BTF \"/sys/kernel/btf/vmlinux\""
            })
        );
        assert_eq!(
            parse_line("pfnwatch-vmtest: FAIL cow/fork: expected 1 event, saw 0\r"),
            Some(GuestLine::Fail {
                check: "cow/fork",
                reason: "expected 1 event, saw 0"
            })
        );
        assert_eq!(
            parse_line("pfnwatch-vmtest: FAIL attach"),
            Some(GuestLine::Fail {
                check: "attach",
                reason: ""
            })
        );
        assert_eq!(
            parse_line("pfnwatch-vmtest: INFO kernel 6.12.117 has folio_walk_start"),
            Some(GuestLine::Info("kernel 6.12.117 has folio_walk_start"))
        );
        assert_eq!(
            parse_line("pfnwatch-vmtest: verdict success\r"),
            Some(GuestLine::Verdict(Verdict::Success))
        );
        assert_eq!(
            parse_line("pfnwatch-vmtest: verdict failure"),
            Some(GuestLine::Verdict(Verdict::Failure))
        );
        assert_eq!(
            parse_line("pfnwatch-vmtest: verdict maybe"),
            Some(GuestLine::Unrecognised("verdict maybe"))
        );
        assert_eq!(parse_line("[    1.234567] Run /init as init process"), None);
    }

    #[test]
    fn finds_the_marker_after_interleaved_printk_text() {
        // A printk without a newline can precede the guest's line on the console.
        assert_eq!(
            parse_line("[    3.1] random: crng initpfnwatch-vmtest: PASS ksm\r"),
            Some(GuestLine::Pass {
                check: "ksm",
                detail: ""
            })
        );
        assert_eq!(
            parse_line("\rpfnwatch-vmtest: PASS ksm"),
            Some(GuestLine::Pass {
                check: "ksm",
                detail: ""
            })
        );
    }
}
