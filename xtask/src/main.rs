//! `cargo xtask <task>`: everything about pfnwatch that is not plain cargo —
//! fetching Debian kernels, building the guest, booting it under qemu.

mod apt;
mod arch;
mod badmod;
mod bench;
mod build;
mod chroot;
mod cmd;
mod cross;
mod deb;
mod demo;
mod deploy;
mod deploy_checks;
mod fuzz;
mod guest;
mod headers;
mod initramfs;
mod kernels;
mod kmods;
mod paths;
mod preflight;
mod promtool;
mod protocol;
mod qemu;
mod replay_check;
mod shell;
mod test;
mod vmtest;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

use crate::arch::Arch;
use crate::kernels::{KERNELS, KernelSpec};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "pfnwatch's build and VM tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Boot Debian kernels under qemu and run the guest's checks in each.
    VmTest {
        /// Kernels to boot; repeat or comma-separate for several.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
        kernel: Vec<KernelChoice>,
        /// The guests' architecture (arm64: Debian's arm64 kernels under
        /// qemu-system-aarch64, pfnwatch cross-built in a Debian testing root).
        #[arg(long, value_enum, default_value = "x86_64")]
        arch: Arch,
        /// Go on with the next kernel after one fails.
        #[arg(long)]
        keep_going: bool,
        /// Seconds of the soak check (mixed scenarios under `pfnwatch run`);
        /// added to each boot's timeout.
        #[arg(long, value_name = "SECS", default_value_t = pfnwatch_testbed_protocol::mode::SOAK_SECS_DEFAULT)]
        soak_secs: u64,
        #[command(flatten)]
        guest: GuestArgs,
    },
    /// Install what is missing, then fmt, clippy, unit tests, the deploy/
    /// checks, a short fuzz run and vm-test on every kernel.
    Test {
        /// Seconds one boot may take before qemu is killed.
        #[arg(long, value_name = "SECS", default_value_t = 480)]
        timeout: u64,
        /// Seconds of fuzzing per fuzz target (0: none).
        #[arg(long, value_name = "SECS", default_value_t = test::FUZZ_SECONDS)]
        fuzz_seconds: u64,
        /// The deploy-test suites to run (`all` for bookworm, trixie and
        /// testing; `none` to skip).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "trixie")]
        deploy_suite: Vec<SuiteChoice>,
        /// The arm64 kernels to boot after the x86-64 ones (`all` adds 6.12,
        /// and 6.1, where pfnwatch must say that nothing attaches; `none`
        /// skips arm64).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "newest")]
        arm64_kernel: Vec<KernelChoice>,
    },
    /// Run every fuzz target (fuzz/, cargo-fuzz on the nightly toolchain,
    /// both installed if missing) from its committed corpus; fails on any crash.
    Fuzz {
        /// Seconds of fuzzing per target.
        #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
        /// Targets to run; repeat or comma-separate for several [default: all].
        #[arg(long, value_delimiter = ',')]
        target: Vec<String>,
    },
    /// Deploy pfnwatch as users do, in a Debian root per suite booted with
    /// systemd: the package under systemd, the journal, Debian's Prometheus,
    /// the OCI image under podman with the DaemonSet's security context.
    DeployTest {
        /// Suites to boot; repeat or comma-separate for several.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "trixie")]
        suite: Vec<SuiteChoice>,
        /// Seconds one suite's boot may take before qemu is killed.
        #[arg(long, value_name = "SECS", default_value_t = deploy::TIMEOUT_DEFAULT)]
        timeout: u64,
        /// Build the package, image and roots, boot nothing.
        #[arg(long)]
        prepare_only: bool,
    },
    /// The deploy/ checks of `test` alone: the Debian package (and lintian),
    /// the systemd unit, the Prometheus config and rules.
    CheckDeploy,
    /// Build the Debian package (man pages and completions generated first)
    /// into target/vmtest/deb/ (target/vmtest/arm64/deb/ for arm64).
    Deb {
        /// The package's architecture (arm64: pfnwatch cross-built as for
        /// `vm-test --arch arm64`).
        #[arg(long, value_enum, default_value = "x86_64")]
        arch: Arch,
    },
    /// Measure pfnwatch's cost in a guest per kernel and write BENCHMARKS.md.
    Bench {
        /// Kernels to boot; repeat or comma-separate for several.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
        kernel: Vec<KernelChoice>,
        /// Rounds of every configuration in each guest (the spread comes from them).
        #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
        runs: u32,
        #[command(flatten)]
        guest: GuestArgs,
        /// Only the host's record and replay figures (no VM): rewrites
        /// their section of BENCHMARKS.md and leaves the rest.
        #[arg(long)]
        host_only: bool,
    },
    /// Install what is missing, build, and run pfnwatch's demo on the newest kernel.
    Demo {
        #[command(flatten)]
        guest: GuestArgs,
    },
    /// Boot a kernel with a shell on the terminal (pfnwatch.mode=shell).
    VmShell {
        #[arg(long, value_enum, default_value = "newest")]
        kernel: KernelChoice,
        #[command(flatten)]
        guest: GuestArgs,
    },
}

#[derive(Debug, clap::Args)]
struct GuestArgs {
    /// Seconds one boot may take before qemu is killed.
    #[arg(long, value_name = "SECS", default_value_t = 480)]
    timeout: u64,
    /// Take pfnwatch-guest-init, pfnwatch and pfnwatch-scenario from DIR instead of
    /// building them (static executables, or scripts for /bin/sh).
    #[arg(long, value_name = "DIR")]
    guest_dir: Option<PathBuf>,
}

/// A Debian suite of deploy-test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SuiteChoice {
    /// Debian 12: systemd 252, Prometheus 2.42, podman 4.3, kernel 6.1
    Bookworm,
    /// Debian 13: systemd 257, Prometheus 2.53, podman 5.4, kernel 6.12
    Trixie,
    /// Debian testing: its systemd, Prometheus, podman and kernel
    Testing,
    All,
    None,
}

/// The selected suites, once each, oldest first.
fn select_suites(choices: &[SuiteChoice]) -> Vec<KernelSpec> {
    let all = choices.contains(&SuiteChoice::All);
    KERNELS
        .into_iter()
        .filter(|spec| {
            all || choices.iter().any(|choice| match choice {
                SuiteChoice::Bookworm => spec.suite == "bookworm",
                SuiteChoice::Trixie => spec.suite == "trixie",
                SuiteChoice::Testing => spec.suite == "testing",
                SuiteChoice::All | SuiteChoice::None => false,
            })
        })
        .filter_map(|spec| deploy::suite(spec.suite))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KernelChoice {
    /// Debian 12 (bookworm)
    #[value(name = "6.1")]
    V6_1,
    /// Debian 13 (trixie)
    #[value(name = "6.12")]
    V6_12,
    /// Debian testing's current kernel
    Newest,
    All,
    /// No kernel (to leave an architecture out)
    None,
}

impl KernelChoice {
    fn selects(self, label: &str) -> bool {
        match self {
            KernelChoice::V6_1 => label == "6.1",
            KernelChoice::V6_12 => label == "6.12",
            KernelChoice::Newest => label == "newest",
            KernelChoice::All => true,
            KernelChoice::None => false,
        }
    }
}

/// The selected kernels, once each, oldest first.
fn select(choices: &[KernelChoice]) -> Vec<KernelSpec> {
    KERNELS
        .into_iter()
        .filter(|spec| choices.iter().any(|choice| choice.selects(spec.label)))
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::VmTest {
            kernel,
            arch,
            keep_going,
            soak_secs,
            guest,
        } => vmtest::run(&vmtest::Options {
            targets: vec![vmtest::Target {
                arch,
                kernels: select(&kernel),
            }],
            keep_going,
            timeout: Duration::from_secs(guest.timeout + soak_secs),
            guest_dir: guest.guest_dir,
            prior: Vec::new(),
            soak_secs,
        }),
        Task::Test {
            timeout,
            fuzz_seconds,
            deploy_suite,
            arm64_kernel,
        } => test::run(&test::Options {
            timeout: Duration::from_secs(timeout),
            fuzz_seconds,
            arm64: select(&arm64_kernel),
            deploy: deploy::Options {
                suites: select_suites(&deploy_suite),
                timeout: Duration::from_secs(deploy::TIMEOUT_DEFAULT),
                prepare_only: false,
            },
        }),
        Task::DeployTest {
            suite,
            timeout,
            prepare_only,
        } => {
            let checks = deploy::run(&deploy::Options {
                suites: select_suites(&suite),
                timeout: Duration::from_secs(timeout),
                prepare_only,
            });
            let mut summary = protocol::Summary::default();
            summary.add(&checks);
            println!("{summary}");
            Ok(summary.failed == 0)
        }
        Task::Fuzz { seconds, target } => paths::Paths::discover().map(|paths| {
            let mut summary = protocol::Summary::default();
            summary.add(&fuzz::run(
                &paths,
                &fuzz::Options {
                    seconds,
                    targets: target,
                },
            ));
            println!("{summary}");
            summary.failed == 0
        }),
        Task::CheckDeploy => paths::Paths::discover().map(|paths| {
            let mut summary = protocol::Summary::default();
            summary.add(&deploy_checks::run(&paths));
            println!("{summary}");
            summary.failed == 0
        }),
        Task::Deb { arch } => paths::Paths::discover()
            .and_then(|paths| deb::build(&paths.for_arch(arch)))
            .map(|deb| {
                println!("{}", deb.display());
                true
            }),
        Task::Bench {
            kernel,
            runs,
            guest,
            host_only,
        } => bench::run(&bench::Options {
            kernels: select(&kernel),
            runs,
            timeout: Duration::from_secs(guest.timeout),
            guest_dir: guest.guest_dir,
            host_only,
        }),
        Task::Demo { guest } => demo::run(&demo::Options {
            timeout: Duration::from_secs(guest.timeout),
            guest_dir: guest.guest_dir,
        })
        .map(|()| true),
        Task::VmShell { kernel, guest } => match select(&[kernel]).first() {
            Some(spec) => shell::run(&shell::Options {
                kernel: *spec,
                guest_dir: guest.guest_dir,
            })
            .map(|()| true),
            None => Err(anyhow::anyhow!(
                "vm-shell boots one kernel; pick 6.1, 6.12 or newest"
            )),
        },
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(choices: &[KernelChoice]) -> Vec<&'static str> {
        select(choices).into_iter().map(|spec| spec.label).collect()
    }

    #[test]
    fn selection_is_ordered_and_deduplicated() {
        assert_eq!(labels(&[KernelChoice::All]), ["6.1", "6.12", "newest"]);
        assert_eq!(
            labels(&[
                KernelChoice::Newest,
                KernelChoice::V6_1,
                KernelChoice::Newest
            ]),
            ["6.1", "newest"]
        );
    }

    #[test]
    fn cli_parses_kernel_lists() {
        let cli = Cli::try_parse_from([
            "xtask",
            "vm-test",
            "--kernel",
            "6.12,newest",
            "--keep-going",
        ])
        .unwrap();
        let Task::VmTest {
            kernel,
            keep_going,
            guest,
            ..
        } = cli.task
        else {
            panic!("not vm-test");
        };
        assert_eq!(kernel, [KernelChoice::V6_12, KernelChoice::Newest]);
        assert!(keep_going);
        assert_eq!(guest.timeout, 480);
        assert!(Cli::try_parse_from(["xtask", "vm-test", "--kernel", "5.10"]).is_err());
    }

    #[test]
    fn deploy_suites_default_to_trixie_and_take_all() {
        let suites = |choices: &[SuiteChoice]| -> Vec<&str> {
            select_suites(choices)
                .into_iter()
                .map(|s| s.suite)
                .collect()
        };
        let Task::DeployTest { suite, timeout, .. } =
            Cli::try_parse_from(["xtask", "deploy-test"]).unwrap().task
        else {
            panic!("not deploy-test");
        };
        assert_eq!(suites(&suite), ["trixie"]);
        assert_eq!(timeout, deploy::TIMEOUT_DEFAULT);
        assert_eq!(
            suites(&[SuiteChoice::All]),
            ["bookworm", "trixie", "testing"]
        );
        assert!(suites(&[SuiteChoice::None]).is_empty());
        let Task::Test { deploy_suite, .. } =
            Cli::try_parse_from(["xtask", "test", "--deploy-suite", "all"])
                .unwrap()
                .task
        else {
            panic!("not test");
        };
        assert_eq!(suites(&deploy_suite).len(), 3);
    }

    #[test]
    fn test_boots_the_newest_arm64_kernel_unless_told_otherwise() {
        let arm64 = |args: &[&str]| -> Vec<&str> {
            let Task::Test { arm64_kernel, .. } = Cli::try_parse_from(args).unwrap().task else {
                panic!("not test");
            };
            select(&arm64_kernel).into_iter().map(|s| s.label).collect()
        };
        assert_eq!(arm64(&["xtask", "test"]), ["newest"]);
        assert!(arm64(&["xtask", "test", "--arm64-kernel", "none"]).is_empty());
        let Task::VmTest { arch, kernel, .. } =
            Cli::try_parse_from(["xtask", "vm-test", "--arch", "arm64", "--kernel", "newest"])
                .unwrap()
                .task
        else {
            panic!("not vm-test");
        };
        assert_eq!(arch, Arch::Arm64);
        assert_eq!(select(&kernel).len(), 1);
        assert!(Cli::try_parse_from(["xtask", "vm-test", "--arch", "riscv64"]).is_err());
    }

    #[test]
    fn fuzz_takes_a_time_bound_and_targets() {
        let Task::Fuzz { seconds, target } = Cli::try_parse_from(["xtask", "fuzz"]).unwrap().task
        else {
            panic!("not fuzz");
        };
        assert_eq!((seconds, target.len()), (20, 0));
        let Task::Fuzz { seconds, target } = Cli::try_parse_from([
            "xtask",
            "fuzz",
            "--seconds",
            "600",
            "--target",
            "capture_read,config_file",
        ])
        .unwrap()
        .task
        else {
            panic!("not fuzz");
        };
        assert_eq!((seconds, target.len()), (600, 2));
        assert!(Cli::try_parse_from(["xtask", "fuzz", "--seconds", "0"]).is_err());
        let Task::Test { fuzz_seconds, .. } =
            Cli::try_parse_from(["xtask", "test", "--fuzz-seconds", "0"])
                .unwrap()
                .task
        else {
            panic!("not test");
        };
        assert_eq!(fuzz_seconds, 0);
    }

    #[test]
    fn bench_takes_kernels_and_a_bounded_round_count() {
        let cli =
            Cli::try_parse_from(["xtask", "bench", "--kernel", "6.1", "--runs", "2"]).unwrap();
        let Task::Bench { kernel, runs, .. } = cli.task else {
            panic!("not bench");
        };
        assert_eq!((kernel, runs), (vec![KernelChoice::V6_1], 2));
        let Task::Bench { kernel, runs, .. } =
            Cli::try_parse_from(["xtask", "bench"]).unwrap().task
        else {
            panic!("not bench");
        };
        assert_eq!((kernel, runs), (vec![KernelChoice::All], 5));
        assert!(Cli::try_parse_from(["xtask", "bench", "--runs", "0"]).is_err());
    }
}
