/*!
monitor: is production still as good as the day it was promoted?

The checks that read Prometheus live here — service SLOs for the router's
and the common servers' metrics ([`slo`]) and GPU resources from DCGM —
along with the report they fold into ([`report`]: `monitor.json`, its
Markdown and the verdict healthy/degraded/failing), the history file and
its trend charts ([`history`]), alerts for Alertmanager ([`alerts`]), and
the rules and dashboard for the always-on half ([`rules`]).

The quality and drift checks reuse other capabilities (eval and the
eval-gate statistics, validate-data's drift summaries); the CLI runs them
and hands their results in as [`report::CheckReport`]s, so this crate
depends on `gantry-core` only.
*/

pub mod alerts;
mod error;
pub mod history;
mod http;
pub mod prometheus;
pub mod report;
pub mod rules;
pub mod slo;

pub use crate::error::{Error, Result};
pub use crate::prometheus::{Prometheus, Sample, promql_duration};
pub use crate::report::{CheckReport, Health, Kind, MonitorReport, REPORT_VERSION, Status};

/// The JSON Schemas this crate's files follow: `(file name, schema)`.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    vec![(
        "monitor.schema.json",
        serde_json::to_value(report::report_schema()).unwrap_or_default(),
    )]
}
