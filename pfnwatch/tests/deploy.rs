//! deploy/ agrees with the binary: the metrics the rules, dashboard and
//! README use exist, the unit's and the DaemonSet's command lines parse,
//! their capabilities are the same three, and the ports are the default.
//! (promtool and systemd-analyze check the files' own syntax in
//! `cargo xtask test`.)

use clap::Parser;
use pfnwatch::cli::{Cli, Command};
use pfnwatch::commands::run::config::ConfigFile;
use pfnwatch::commands::run::settings::{DEFAULT_LISTEN, Settings};
use pfnwatch::sinks::metrics;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Words that start like a metric and are not one: the test module's name.
const NOT_METRICS: [&str; 1] = ["pfnwatch_badmod"];

/// `pfnwatch_...` words in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("pfnwatch_") && w.len() > "pfnwatch_".len())
        .filter(|w| !NOT_METRICS.contains(w))
        .map(str::to_owned)
        .collect()
}

#[test]
fn rules_dashboard_and_readme_use_only_exported_metrics() {
    let known: BTreeSet<&str> = metrics::ALL.iter().map(|s| s.name).collect();
    let files = [
        "deploy/prometheus/pfnwatch.rules.yml",
        "deploy/prometheus/pfnwatch.rules.test.yml",
        "deploy/grafana/pfnwatch-dashboard.json",
        "README.md",
    ];
    let mut used = BTreeSet::new();
    for file in files {
        for name in metric_names(&read(file)) {
            assert!(
                known.contains(name.as_str()),
                "{file} uses {name}, which pfnwatch does not export"
            );
            used.insert(name);
        }
    }
    // The README's table lists every family.
    let readme = metric_names(&read("README.md"));
    for name in &known {
        assert!(readme.contains(*name), "README.md does not document {name}");
    }
    // The alerts the issue asks for exist.
    let rules = read("deploy/prometheus/pfnwatch.rules.yml");
    for alert in [
        "PfnwatchRuleHit",
        "PfnwatchHookNotAttached",
        "PfnwatchRecordsDropped",
    ] {
        assert!(rules.contains(&format!("alert: {alert}")), "{alert}");
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/pfnwatch-dashboard.json")).unwrap();
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 8));
}

/// The values of `key=` lines in a systemd unit, split on spaces.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .flat_map(|v| v.split_whitespace().map(str::to_owned))
        .collect()
}

fn run_args(argv: &[&str]) -> pfnwatch::cli::RunArgs {
    match Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
        .command
    {
        Command::Run(args) => args,
        other => panic!("{argv:?} is not `run`: {other:?}"),
    }
}

#[test]
fn the_unit_runs_the_daemon_with_three_capabilities() {
    let unit = read("deploy/pfnwatch.service");
    let exec = unit_values(&unit, "ExecStart");
    assert_eq!(exec[0], "/usr/bin/pfnwatch");
    let argv: Vec<&str> = exec.iter().map(String::as_str).collect();
    let args = run_args(&argv);
    assert!(args.config.is_none(), "the unit reads the default file");
    let caps = ["CAP_BPF", "CAP_PERFMON", "CAP_SYSLOG"];
    assert_eq!(unit_values(&unit, "CapabilityBoundingSet"), caps);
    assert_eq!(unit_values(&unit, "AmbientCapabilities"), caps);
    assert!(
        unit_values(&unit, "PrivateNetwork").is_empty(),
        "it serves /metrics"
    );
    assert_eq!(unit_values(&unit, "ProtectSystem"), ["strict"]);
    assert_eq!(unit_values(&unit, "NoNewPrivileges"), ["yes"]);
    // The state directory is where the documented alerts file goes.
    assert_eq!(unit_values(&unit, "StateDirectory"), ["pfnwatch"]);
    assert!(read("deploy/pfnwatch.toml").contains("# alerts_file = \"/var/lib/pfnwatch/"));
}

/// The web configuration the toml documents is where the example and the
/// unit expect it: under /etc/pfnwatch, which the unit leaves readable.
#[test]
fn the_unit_can_read_the_documented_web_config() {
    let toml = read("deploy/pfnwatch.toml");
    let documented = toml
        .lines()
        .find_map(|l| l.strip_prefix("# config_file = "))
        .expect("deploy/pfnwatch.toml documents web.config_file");
    let path: String = serde_json::from_str(documented).unwrap();
    assert!(path.starts_with("/etc/pfnwatch/"), "{path}");
    let example = read("deploy/web-config.yml.example");
    assert!(example.contains(&format!("config_file = \"{path}\"")));
    let unit = read("deploy/pfnwatch.service");
    // strict: /etc read-only, not hidden; nothing else may hide it.
    assert_eq!(unit_values(&unit, "ProtectSystem"), ["strict"]);
    for hiding in ["InaccessiblePaths", "TemporaryFileSystem"] {
        assert!(
            unit_values(&unit, hiding)
                .iter()
                .all(|p| !"/etc/pfnwatch".starts_with(p.trim_start_matches('-'))),
            "{hiding}= hides /etc/pfnwatch"
        );
    }
}

#[test]
fn prometheus_scrapes_the_default_port() {
    let scrape = read("deploy/prometheus/prometheus.yml");
    assert!(
        scrape.contains(&format!("\"localhost:{}\"", DEFAULT_LISTEN.port())),
        "{scrape}"
    );
    assert!(DEFAULT_LISTEN.ip().is_loopback());
}

/// The block scalar under `key: |` in a YAML file, dedented.
fn block(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let head = lines.next().unwrap_or_else(|| panic!("no {key}: |"));
    let indent = head.len() - head.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_daemonset_runs_its_config_map_on_the_port_it_exposes() {
    let manifest = read("deploy/kubernetes/pfnwatch-daemonset.yaml");
    let toml = block(&manifest, "pfnwatch.toml");
    let file = ConfigFile::parse(&toml, Path::new("ConfigMap pfnwatch.toml")).unwrap();
    let args_line = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("args: "))
        .expect("args");
    let args: Vec<String> = serde_json::from_str(args_line).unwrap();
    let argv: Vec<&str> = std::iter::once("pfnwatch")
        .chain(args.iter().map(String::as_str))
        .collect();
    let run = run_args(&argv);
    assert_eq!(
        run.config.as_deref(),
        Some(Path::new("/etc/pfnwatch/pfnwatch.toml"))
    );
    assert!(manifest.contains("mountPath: /etc/pfnwatch\n"));
    let settings = Settings::resolve(&file, &run);
    assert!(
        settings.listen_address.ip().is_unspecified(),
        "pod IP, not loopback"
    );
    assert!(
        manifest.contains(&format!(
            "containerPort: {}\n",
            settings.listen_address.port()
        )),
        "the container port is the one pfnwatch listens on"
    );
    assert!(manifest.contains(r#"add: ["BPF", "PERFMON", "SYSLOG"]"#));
    assert!(manifest.contains(r#"drop: ["ALL"]"#));
    assert!(
        manifest.contains("hostPID: true"),
        "the self filter needs host pids"
    );
}
