//! `pfnwatch-trigger <scenario>`: run one scenario, print its report as JSON.
//! `pfnwatch-trigger --list` names them.

use pfnwatch_trigger::scenario::{self, SCENARIOS};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag] if flag == "--list" => {
            for s in SCENARIOS {
                println!("{:<16} {}", s.name, s.about);
            }
            ExitCode::SUCCESS
        }
        [name] => match scenario::find(name) {
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
        _ => fail("usage: pfnwatch-trigger <scenario> | --list"),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("pfnwatch-trigger: {msg}");
    ExitCode::FAILURE
}
