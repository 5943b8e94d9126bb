use clap::Parser;
use pfnwatch::cli::{Cli, Command, LiveArgs};
use pfnwatch::commands::{check, manual, replay, run as daemon, synth, trace};
use pfnwatch::rules::{self, RuleConfig};
use pfnwatch::views::ViewOptions;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = Cli::parse();
    pfnwatch::logging::init();
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
        Command::Run(args) if args.check_config => {
            println!("{}", daemon::check_config(&args)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            runtime()?.block_on(daemon::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace(args) => live(args, None),
        Command::Record { file, live: args } => live(args, Some(file)),
        Command::Replay {
            file,
            stack,
            rules,
            filter,
            count,
            output,
            alerts,
        } => {
            let config = rules.apply(RuleConfig::default());
            let view = ViewOptions {
                format: output.format(),
                stack,
                filter: filter.filter(&config)?,
                count,
                dedup_window: Duration::from_secs(alerts.dedup_window),
                alerts_file: alerts.alerts_file,
                color: colors(output.color()),
            };
            // No colour: plain text into a buffer, nothing for anstream to
            // strip (which took a tenth of a replay's time).
            let result = if view.color {
                let out = anstream::AutoStream::new(std::io::stdout().lock(), output.color());
                replay::replay(&file, config, view, out)
            } else {
                let out = std::io::BufWriter::with_capacity(256 << 10, std::io::stdout().lock());
                replay::replay(&file, config, view, out)
            };
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::SynthCapture {
            file,
            records,
            writer_only,
        } => {
            let written = synth::synth(&file, records, writer_only)?;
            synth::report(&written, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            manual::completions(shell, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { command, dir } => {
            match dir {
                Some(dir) => {
                    for page in manual::write_pages(&dir)? {
                        println!("{}", page.display());
                    }
                }
                None => manual::page(command.as_deref(), &mut std::io::stdout().lock())?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `trace`, or `record` into `capture`.
fn live(args: LiveArgs, capture: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let rules = args.rules.rule_set();
    let filter = args.filter.filter(&rules.config)?;
    // Naming hooks asks for their calls, not only their rule hits.
    let selection = if args.all || filter.hooks.is_some() {
        rules::Selection::All
    } else {
        rules::Selection::Rules
    };
    // A capture always carries the call path: replay's alerts need it.
    let capture_stack = args.stack || capture.is_some();
    let mut session = args.kernel.session(selection, rules, capture_stack);
    session.hooks = filter.hooks.clone();
    session.narrow = Some(filter.record_mask(&session.rules));
    session.only_pids = filter.kernel_pids();
    let opts = trace::TraceOptions {
        session,
        view: ViewOptions {
            format: args.output.format(),
            stack: args.stack,
            filter,
            count: args.stop.count,
            dedup_window: Duration::from_secs(args.alerts.dedup_window),
            alerts_file: args.alerts.alerts_file,
            color: colors(args.output.color()),
        },
        duration: args.stop.duration,
        record: capture.map(|file| (file, std::env::args().collect())),
        color: args.output.color(),
    };
    runtime()?.block_on(trace::trace(opts))?;
    Ok(ExitCode::SUCCESS)
}

/// Whether stdout gets colour, as anstream decides for `choice` (a
/// terminal, NO_COLOR, CLICOLOR_FORCE).
fn colors(choice: anstream::ColorChoice) -> bool {
    anstream::AutoStream::new(std::io::stdout(), choice).current_choice()
        != anstream::ColorChoice::Never
}

/// One thread is plenty: the work is reading one ring buffer.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
