//! The lines the host reads: PASS/FAIL per check, INFO, one verdict.

use super::PREFIX;
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
        say(&format!("PASS {name}: {detail}"));
    }

    pub fn fail(&mut self, name: &str, reason: &str) {
        self.failed += 1;
        say(&format!("FAIL {name}: {reason}"));
    }

    pub fn info(&self, text: &str) {
        for line in text.lines() {
            say(&format!("INFO {line}"));
        }
    }

    pub fn verdict(&self) {
        let ok = self.failed == 0 && self.passed > 0;
        say(&format!(
            "verdict {}",
            if ok { "success" } else { "failure" }
        ));
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The console is all we have; nothing to do if it fails.
    let _ = writeln!(out, "{PREFIX} {line}");
    let _ = out.flush();
}
