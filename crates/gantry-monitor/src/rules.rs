//! The always-on half: Prometheus alerting rules for the same SLOs the
//! weekly run checks, and a Grafana dashboard for the router's, vLLM's and
//! DCGM's metrics.

use serde_json::{Value, json};

use crate::slo::{Flavor, Signal, Threshold, query};

/// What the rules and the dashboard are for.
#[derive(Debug, Clone)]
pub struct RulesOptions {
    /// The model (a label on every alert).
    pub model: String,
    /// The environment (a label on every alert).
    pub environment: String,
    /// Whose metric names.
    pub flavor: Flavor,
    /// Label matchers without braces.
    pub selector: String,
    /// SLO thresholds.
    pub thresholds: Vec<Threshold>,
    /// The rate window of each rule (PromQL duration, e.g. `5m`).
    pub rate_window: String,
    /// How long a breach lasts before the alert fires (e.g. `15m`).
    pub for_duration: String,
}

/// The alerting rule file (YAML), one group, one rule per SLO threshold.
/// Only what Prometheus 2.42 accepts: no group-level `labels`, no `query_offset`.
pub fn prometheus_rules(options: &RulesOptions) -> String {
    let mut rules = Vec::new();
    for threshold in &options.thresholds {
        let Some(expr) = query(
            options.flavor,
            threshold.signal,
            &options.selector,
            &options.rate_window,
        ) else {
            continue;
        };
        // Thresholds are in the signal's unit; latency queries are in seconds.
        let limit = match threshold.signal {
            Signal::LatencyP95 | Signal::TtftP95 => threshold.limit / 1000.0,
            _ => threshold.limit,
        };
        let comparison = if threshold.signal.higher_is_worse() {
            ">"
        } else {
            "<"
        };
        let alert = format!(
            "Gantry{}",
            threshold
                .signal
                .name()
                .split('-')
                .map(|part| {
                    let mut chars = part.chars();
                    chars.next().map_or_else(String::new, |first| {
                        first.to_uppercase().chain(chars).collect()
                    })
                })
                .collect::<String>()
        );
        let severity = if threshold.signal == Signal::ErrorRate {
            "critical"
        } else {
            "warning"
        };
        rules.push(json!({
            "alert": alert,
            "expr": format!("({expr}) {comparison} {limit}"),
            "for": options.for_duration,
            "labels": {
                "severity": severity,
                "model": options.model,
                "environment": options.environment,
                "check": threshold.signal.name(),
            },
            "annotations": {
                "summary": format!("{} of {} in {} breaches its SLO ({})", threshold.signal.name(), options.model, options.environment, threshold.text()),
                "description": format!("{} over the last {} is {{{{ $value }}}} (the SLO: {} {limit}).", threshold.signal.name(), options.rate_window, comparison.replace('>', "≤").replace('<', "≥")),
            },
        }));
    }
    let document = json!({
        "groups": [{
            "name": format!("gantry-monitor-{}-{}", options.model, options.environment),
            "rules": rules,
        }]
    });
    serde_norway::to_string(&document).unwrap_or_default()
}

/// A Grafana dashboard (JSON model, `schemaVersion` 39) for the router,
/// vLLM and DCGM metrics, with a `DS_PROMETHEUS` datasource variable so it
/// imports and provisions alike.
pub fn grafana_dashboard(options: &RulesOptions) -> Value {
    let datasource = json!({ "type": "prometheus", "uid": "${DS_PROMETHEUS}" });
    let mut panels = Vec::new();
    let mut add = |title: &str, unit: &str, targets: Vec<(String, String)>| {
        let index = panels.len();
        panels.push(json!({
            "id": index + 1,
            "type": "timeseries",
            "title": title,
            "datasource": datasource,
            "gridPos": { "x": (index % 2) * 12, "y": (index / 2) * 8, "w": 12, "h": 8 },
            "fieldConfig": { "defaults": { "unit": unit }, "overrides": [] },
            "options": { "legend": { "displayMode": "list", "placement": "bottom" } },
            "targets": targets.iter().enumerate().map(|(n, (expr, legend))| json!({
                "refId": char::from(b'A' + u8::try_from(n).unwrap_or(0)).to_string(),
                "expr": expr,
                "legendFormat": legend,
                "datasource": datasource,
            })).collect::<Vec<_>>(),
        }));
    };
    let window = "$__rate_interval";
    let by = match options.flavor {
        Flavor::Router => "version",
        Flavor::Vllm => "model_name",
        Flavor::Tgi => "instance",
    };
    let legend = format!("{{{{{by}}}}}");
    for signal in Signal::ALL {
        let Some(expr) = query(options.flavor, signal, &options.selector, window) else {
            continue;
        };
        let (title, unit) = match signal {
            Signal::LatencyP95 => ("p95 end-to-end latency", "s"),
            Signal::TtftP95 => ("p95 time to first token", "s"),
            Signal::ErrorRate => ("error rate", "percentunit"),
            Signal::TokensPerSecond => ("output tokens per second", "short"),
            Signal::RequestsPerSecond => ("requests per second", "reqps"),
        };
        add(title, unit, vec![(expr, legend.clone())]);
    }
    if options.flavor == Flavor::Router {
        add(
            "traffic share by version",
            "percent",
            vec![(
                "max by (version) (gantry_router_backend_weight_percent)".to_owned(),
                "{{version}}".to_owned(),
            )],
        );
    }
    if options.flavor == Flavor::Vllm {
        add(
            "KV cache usage and queue",
            "short",
            vec![
                (
                    "max by (model_name) (vllm:kv_cache_usage_perc)".to_owned(),
                    "KV cache {{model_name}}".to_owned(),
                ),
                (
                    "sum by (model_name) (vllm:num_requests_waiting)".to_owned(),
                    "waiting {{model_name}}".to_owned(),
                ),
            ],
        );
    }
    add(
        "GPU utilization (DCGM)",
        "percent",
        vec![(
            "avg by (gpu, Hostname, hostname) (DCGM_FI_DEV_GPU_UTIL)".to_owned(),
            "GPU {{gpu}} {{Hostname}}{{hostname}}".to_owned(),
        )],
    );
    add(
        "GPU memory used (DCGM)",
        "percentunit",
        vec![("DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE + DCGM_FI_DEV_FB_RESERVED)".to_owned(), "GPU {{gpu}} {{Hostname}}{{hostname}}".to_owned())],
    );
    let uid: String = format!("gantry-{}-{}", options.model, options.environment)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    json!({
        "id": null,
        "uid": uid,
        "title": format!("gantry: {} in {}", options.model, options.environment),
        "tags": ["gantry", "llm", options.flavor.as_str()],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "time": { "from": "now-7d", "to": "now" },
        "refresh": "1m",
        "templating": { "list": [{
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        }]},
        "annotations": { "list": [] },
        "panels": panels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> RulesOptions {
        RulesOptions {
            model: "tiny".into(),
            environment: "production".into(),
            flavor: Flavor::Router,
            selector: r#"version="0.1.0""#.into(),
            thresholds: Threshold::defaults(),
            rate_window: "5m".into(),
            for_duration: "15m".into(),
        }
    }

    #[test]
    fn rules_compare_in_the_query_unit_and_carry_the_labels() {
        let yaml = prometheus_rules(&options());
        let document: Value = serde_norway::from_str(&yaml).expect("YAML");
        let rules = document["groups"][0]["rules"].as_array().expect("rules");
        assert_eq!(rules.len(), 3);
        let latency = rules
            .iter()
            .find(|rule| rule["alert"] == "GantryLatencyP95")
            .expect("latency rule");
        assert!(
            latency["expr"].as_str().unwrap_or("").ends_with(") > 10"),
            "{latency}"
        );
        assert_eq!(latency["labels"]["model"], "tiny");
        assert_eq!(latency["for"], "15m");
        assert!(document["groups"][0].get("labels").is_none());
    }

    #[test]
    fn the_dashboard_has_a_datasource_variable_and_a_panel_per_signal() {
        let dashboard = grafana_dashboard(&options());
        assert_eq!(dashboard["schemaVersion"], 39);
        assert_eq!(dashboard["uid"], "gantry-tiny-production");
        assert_eq!(dashboard["templating"]["list"][0]["type"], "datasource");
        let panels = dashboard["panels"].as_array().expect("panels");
        // five signals, the router's weights, two DCGM panels
        assert_eq!(panels.len(), 8);
        assert!(
            panels
                .iter()
                .all(|panel| panel["targets"][0]["datasource"]["uid"] == "${DS_PROMETHEUS}")
        );
        let ids: std::collections::BTreeSet<u64> = panels
            .iter()
            .filter_map(|panel| panel["id"].as_u64())
            .collect();
        assert_eq!(ids.len(), panels.len());
    }
}
