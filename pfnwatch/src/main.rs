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
        Command::Run { kernel, interval } => {
            runtime()?.block_on(daemon::run(daemon::RunOptions {
                ringbuf_bytes: kernel.ringbuf_bytes(),
                btf: kernel.btf,
                interval: Duration::from_secs(interval),
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace {
            kernel,
            all,
            format,
        } => {
            runtime()?.block_on(trace::trace(trace::TraceOptions {
                ringbuf_bytes: kernel.ringbuf_bytes(),
                btf: kernel.btf,
                selection: if all {
                    rules::Selection::All
                } else {
                    rules::Selection::Rules
                },
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
