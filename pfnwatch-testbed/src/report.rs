//! What a scenario did, as `pfnwatch-scenario` prints it (one JSON line).

use crate::scenario::Scenario;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub scenario: Scenario,
    pub tgid: u32,
    /// Processes the scenario forked (they share its mappings).
    pub children: Vec<u32>,
    pub mappings: Vec<Mapping>,
    /// CLOCK_MONOTONIC window (ns) of the scenario's own actions.
    pub start_ns: u64,
    pub end_ns: u64,
    /// move_pages(2) status per page, when the scenario called it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_pages_status: Option<Vec<i32>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub label: String,
    pub start: u64,
    pub end: u64,
    /// Page indexes the scenario wrote to (COW copies in a private mapping).
    pub written_pages: Vec<u64>,
}

impl Report {
    /// An empty report of `scenario` by this process, starting now.
    pub fn new(scenario: Scenario, start_ns: u64) -> Report {
        Report {
            scenario,
            tgid: std::process::id(),
            children: Vec::new(),
            mappings: Vec::new(),
            start_ns,
            end_ns: start_ns,
            move_pages_status: None,
        }
    }

    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.tgid).chain(self.children.iter().copied())
    }
}
