//! Where the daemon's outcomes go: alerts to the log (`alert_log.rs`) and
//! the alerts file (`alerts_file.rs`), counts to `/metrics` (`metrics/`,
//! served by `http.rs`).

pub mod alert_log;
pub mod alerts_file;
pub mod http;
pub mod metrics;
