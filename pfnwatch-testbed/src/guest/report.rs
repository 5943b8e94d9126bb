//! The lines the host reads: PASS/FAIL per check, INFO, one verdict, and
//! files (pfnwatch-testbed-protocol declares them for both sides).

use pfnwatch_testbed_protocol::checks::{self, Verdict};
use pfnwatch_testbed_protocol::files;
use std::io::Write;

#[derive(Debug, Default)]
pub struct Reporter {
    pub passed: usize,
    pub failed: usize,
}

impl Reporter {
    pub fn check(&mut self, name: &str, ok: bool, detail: &str) {
        if ok {
            self.pass(name, detail);
        } else {
            self.fail(name, detail);
        }
    }

    pub fn pass(&mut self, name: &str, detail: &str) {
        self.passed += 1;
        say(&checks::pass_line(name, detail));
    }

    pub fn fail(&mut self, name: &str, reason: &str) {
        self.failed += 1;
        say(&checks::fail_line(name, reason));
    }

    pub fn info(&self, text: &str) {
        for line in text.lines() {
            say(&checks::info_line(line));
        }
    }

    /// Sends `bytes` to the host as file `name` (saved as
    /// `target/vmtest/<kernel>.<name>`).
    pub fn send_file(&self, name: &str, bytes: &[u8]) {
        for line in files::encode(name, bytes) {
            say(&line);
        }
    }

    pub fn verdict(&self) {
        let ok = self.failed == 0 && self.passed > 0;
        say(&checks::verdict_line(if ok {
            Verdict::Success
        } else {
            Verdict::Failure
        }));
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The console is all we have; the host notices what is missing.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
