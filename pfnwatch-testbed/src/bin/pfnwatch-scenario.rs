//! `pfnwatch-scenario <scenario>`: run one scenario, print its report as
//! JSON. `pfnwatch-scenario --list` names them.

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
        [name] => match Scenario::find(name) {
            Some(s) => match s.run() {
                Ok(report) => match serde_json::to_string(&report) {
                    Ok(json) => {
                        println!("{json}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(&format!("{name}: encoding the report: {e}")),
                },
                Err(e) => fail(&format!("{name}: {e:#}")),
            },
            None => fail(&format!("unknown scenario {name:?} (see --list)")),
        },
        _ => fail("usage: pfnwatch-scenario <scenario> | --list"),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("pfnwatch-scenario: {msg}");
    ExitCode::FAILURE
}
