//! What the process has done, as numbers: requests by route and status with latency, upload
//! bytes, jobs by outcome, transcribed audio and real-time factor by engine, EHR deliveries by
//! outcome, retention deletions; rendered in the Prometheus text format at `GET /metrics`.
//! Labels are route templates, engines and outcomes — never ids, names or anything a patient
//! could be recognised by.

use std::{collections::BTreeMap, fmt::Write as _, sync::Mutex};

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const RTF_BUCKETS: &[f64] = &[0.05, 0.1, 0.2, 0.5, 1.0, 2.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    upload_bytes: u64,
    jobs: BTreeMap<(&'static str, &'static str), u64>,
    /// By (engine, model).
    audio_seconds: BTreeMap<(String, String), f64>,
    real_time_factor: BTreeMap<(String, String), Histogram>,
    ehr_deliveries: BTreeMap<&'static str, u64>,
    retention_deletions: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Escapes a label value for the text format.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut inner)
    }

    pub fn record_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.with(|m| {
            *m.requests
                .entry((route.to_owned(), method.to_owned(), status))
                .or_default() += 1;
            m.latency
                .entry(route.to_owned())
                .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
                .observe(seconds);
        });
    }

    pub fn record_upload(&self, bytes: u64) {
        self.with(|m| m.upload_bytes += bytes);
    }

    /// `outcome`: `ack`, `retry` or `dead_letter`.
    pub fn record_job(&self, queue: &'static str, outcome: &'static str) {
        self.with(|m| *m.jobs.entry((queue, outcome)).or_default() += 1);
    }

    /// `model`: what the engine describes itself as (`whisper-1`, `whisper.cpp tiny.en`): one
    /// value per configured engine, so the label stays small.
    pub fn record_transcription(
        &self,
        engine: &str,
        model: &str,
        audio_s: Option<f64>,
        elapsed_s: f64,
    ) {
        self.with(|m| {
            if let Some(audio) = audio_s.filter(|a| *a > 0.0) {
                let key = (engine.to_owned(), model.to_owned());
                *m.audio_seconds.entry(key.clone()).or_default() += audio;
                m.real_time_factor
                    .entry(key)
                    .or_insert_with(|| Histogram::new(RTF_BUCKETS))
                    .observe(elapsed_s / audio);
            }
        });
    }

    /// `outcome`: `delivered`, `retry` or `failed`.
    pub fn record_ehr(&self, outcome: &'static str) {
        self.with(|m| *m.ehr_deliveries.entry(outcome).or_default() += 1);
    }

    pub fn record_retention_deletions(&self, records: u64) {
        self.with(|m| m.retention_deletions += records);
    }

    /// The Prometheus text exposition (format 0.0.4); `queues` are `(name, visible, in
    /// flight, dead-lettered, oldest age in seconds)` read at scrape time.
    pub fn render(&self, queues: &[(&str, u64, u64, u64, Option<f64>)]) -> String {
        let mut out = String::new();
        self.with(|m| {
            let _ = writeln!(out, "# HELP mmt_http_requests_total HTTP requests by route template, method and status.");
            let _ = writeln!(out, "# TYPE mmt_http_requests_total counter");
            for ((route, method, status), n) in &m.requests {
                let _ = writeln!(
                    out,
                    "mmt_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                    label(route),
                    label(method)
                );
            }
            let _ = writeln!(out, "# HELP mmt_http_request_duration_seconds HTTP request latency by route template.");
            let _ = writeln!(out, "# TYPE mmt_http_request_duration_seconds histogram");
            for (route, h) in &m.latency {
                let labels = format!("route=\"{}\"", label(route));
                write_histogram(&mut out, "mmt_http_request_duration_seconds", &labels, h);
            }
            let _ = writeln!(out, "# HELP mmt_upload_bytes_total Audio bytes accepted by uploads.");
            let _ = writeln!(out, "# TYPE mmt_upload_bytes_total counter");
            let _ = writeln!(out, "mmt_upload_bytes_total {}", m.upload_bytes);
            let _ = writeln!(out, "# HELP mmt_jobs_total Queued jobs handled, by queue and outcome.");
            let _ = writeln!(out, "# TYPE mmt_jobs_total counter");
            for ((queue, outcome), n) in &m.jobs {
                let _ = writeln!(out, "mmt_jobs_total{{queue=\"{queue}\",outcome=\"{outcome}\"}} {n}");
            }
            let _ = writeln!(out, "# HELP mmt_transcribed_audio_seconds_total Seconds of audio transcribed, by engine and model.");
            let _ = writeln!(out, "# TYPE mmt_transcribed_audio_seconds_total counter");
            for ((engine, model), seconds) in &m.audio_seconds {
                let _ = writeln!(out, "mmt_transcribed_audio_seconds_total{{engine=\"{}\",model=\"{}\"}} {seconds}", label(engine), label(model));
            }
            let _ = writeln!(out, "# HELP mmt_transcription_real_time_factor Processing time over audio time, by engine and model.");
            let _ = writeln!(out, "# TYPE mmt_transcription_real_time_factor histogram");
            for ((engine, model), h) in &m.real_time_factor {
                let labels = format!("engine=\"{}\",model=\"{}\"", label(engine), label(model));
                write_histogram(&mut out, "mmt_transcription_real_time_factor", &labels, h);
            }
            let _ = writeln!(out, "# HELP mmt_ehr_deliveries_total EHR delivery attempts by outcome.");
            let _ = writeln!(out, "# TYPE mmt_ehr_deliveries_total counter");
            for (outcome, n) in &m.ehr_deliveries {
                let _ = writeln!(out, "mmt_ehr_deliveries_total{{outcome=\"{outcome}\"}} {n}");
            }
            let _ = writeln!(out, "# HELP mmt_retention_deletions_total Records deleted by the retention sweep.");
            let _ = writeln!(out, "# TYPE mmt_retention_deletions_total counter");
            let _ = writeln!(out, "mmt_retention_deletions_total {}", m.retention_deletions);
        });
        let _ = writeln!(
            out,
            "# HELP mmt_queue_messages Messages in a queue, by state."
        );
        let _ = writeln!(out, "# TYPE mmt_queue_messages gauge");
        for (queue, visible, in_flight, dead, _) in queues {
            for (state, n) in [
                ("visible", visible),
                ("in_flight", in_flight),
                ("dead_lettered", dead),
            ] {
                let _ = writeln!(
                    out,
                    "mmt_queue_messages{{queue=\"{queue}\",state=\"{state}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP mmt_queue_oldest_message_age_seconds Age of the oldest waiting message."
        );
        let _ = writeln!(out, "# TYPE mmt_queue_oldest_message_age_seconds gauge");
        for (queue, _, _, _, age) in queues {
            let _ = writeln!(
                out,
                "mmt_queue_oldest_message_age_seconds{{queue=\"{queue}\"}} {}",
                age.unwrap_or(0.0)
            );
        }
        out
    }
}

/// `labels`: already escaped, `a="x",b="y"`.
fn write_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    for (bound, count) in h.bounds.iter().zip(&h.counts) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

/// One CloudWatch Embedded Metric Format line: CloudWatch turns it into metrics when a Lambda
/// function writes it to its log, with no API call. Dimension values are route templates,
/// queue names and statuses only.
pub fn emf_line(dimensions: &[(&str, String)], metrics: &[(&str, &str, f64)]) -> String {
    let mut root = serde_json::Map::new();
    let names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    let definitions: Vec<serde_json::Value> = metrics
        .iter()
        .map(|(name, unit, _)| serde_json::json!({"Name": name, "Unit": unit}))
        .collect();
    root.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": "MMT",
                "Dimensions": [names],
                "Metrics": definitions,
            }],
        }),
    );
    for (name, value) in dimensions {
        root.insert((*name).to_owned(), serde_json::Value::String(value.clone()));
    }
    for (name, _, value) in metrics {
        root.insert((*name).to_owned(), serde_json::json!(value));
    }
    serde_json::Value::Object(root).to_string()
}

/// Writes an EMF line to standard output (the function's log in Lambda).
pub fn emit_emf(line: String) {
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_declare_every_metric_and_dimension_they_carry() {
        let line = emf_line(
            &[("Queue", "transcribe".into())],
            &[("JobsAcked", "Count", 2.0), ("JobsRetried", "Count", 1.0)],
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let directive = &value["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "MMT");
        assert_eq!(directive["Dimensions"], serde_json::json!([["Queue"]]));
        assert_eq!(value["Queue"], "transcribe");
        for metric in directive["Metrics"].as_array().unwrap() {
            assert!(value[metric["Name"].as_str().unwrap()].is_number());
        }
        assert!(value["_aws"]["Timestamp"].is_i64());
        assert!(!line.contains('\n'));
    }

    #[test]
    fn the_text_format_escapes_label_values() {
        let metrics = Metrics::default();
        metrics.record_request("/a\"b", "GET", 200, 0.01);
        let text = metrics.render(&[]);
        assert!(text.contains("route=\"/a\\\"b\""), "{text}");
    }
}
