use clap::Parser;
use pfnwatch::cli::{Cli, Command};
use pfnwatch::{check, daemon, rules, trace};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for people: journald and pipes get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("pfnwatch: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { kernel, format } => {
            let report = check::check(kernel.btf.as_deref());
            println!("{}", check::render(&report, format));
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Run {
            kernel,
            rules,
            interval,
            alerts_file,
            dedup_window,
            log_severity,
        } => {
            let rules = rules.rule_set()?;
            runtime()?.block_on(daemon::run(daemon::RunOptions {
                // Alerts name the driver by its call path.
                session: kernel.session(rules::Selection::Rules, rules, true),
                interval: Duration::from_secs(interval),
                alerts_file,
                dedup_window: Duration::from_secs(dedup_window),
                log_severity,
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace {
            kernel,
            all,
            stack,
            rules,
            format,
        } => {
            let rules = rules.rule_set()?;
            let selection = if all {
                rules::Selection::All
            } else {
                rules::Selection::Rules
            };
            runtime()?.block_on(trace::trace(trace::TraceOptions {
                session: kernel.session(selection, rules, stack),
                format,
            }))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One thread is plenty: the work is reading one ring buffer.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
