//! `pfnwatch-scenario <scenario>`: run one scenario, print its report as
//! JSON. `pfnwatch-scenario --repeat N <scenario>` runs it N times in one
//! process (the flood) and prints the last report. `--list` names them.

use pfnwatch_testbed::scenario::Scenario;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag] if flag == "--list" => {
            for s in Scenario::ALL {
                println!("{:<22} {}", s.name(), s.spec().about);
            }
            ExitCode::SUCCESS
        }
        [flag, n, name] if flag == "--repeat" => match (n.parse::<u64>(), Scenario::find(name)) {
            (Ok(n), Some(s)) if n > 0 => {
                for i in 1..n {
                    if let Err(e) = s.run() {
                        return fail(&format!("{name}: run {i} of {n}: {e:#}"));
                    }
                }
                report(name, s)
            }
            _ => fail(&format!(
                "--repeat {n} {name}: want a count above 0 and a scenario"
            )),
        },
        [name] => match Scenario::find(name) {
            Some(s) => report(name, s),
            None => fail(&format!("unknown scenario {name:?} (see --list)")),
        },
        _ => fail("usage: pfnwatch-scenario [--repeat N] <scenario> | --list"),
    }
}

/// Runs `s` and prints its report.
fn report(name: &str, s: Scenario) -> ExitCode {
    match s.run() {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("{name}: encoding the report: {e}")),
        },
        Err(e) => fail(&format!("{name}: {e:#}")),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("pfnwatch-scenario: {msg}");
    ExitCode::FAILURE
}
