//! CloudWatch Embedded Metric Format (EMF): what one invocation did, as JSON lines that CloudWatch Logs turns into
//! metrics when the function prints them to standard output.
//!
//! One line per source of the batch (dimension set `[function, source]`; a record whose source is unknown, such as
//! a malformed message or one not started, counts under `unknown`). Counts are plain numbers, durations and
//! latencies arrays of values in milliseconds (EMF allows up to 100 values per metric and line; longer arrays
//! continue on further lines that carry only them). Pure: the batch's results and the time in, lines out.

use crate::RecordResult;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use synctrail::engine::{Disposition, Outcome};
use synctrail::model::Status;

/// The namespace when none is configured (`SYNCTRAIL_METRICS_NAMESPACE`).
pub const DEFAULT_NAMESPACE: &str = synctrail::config::DEFAULT_METRICS_NAMESPACE;
/// The dimension value of a function or a source that is not known.
pub const UNKNOWN: &str = "unknown";
/// The dimension naming the function (its name, without the version).
pub const FUNCTION_DIMENSION: &str = "function";
/// The dimension naming the events' source (`github`, `shopify`, …).
pub const SOURCE_DIMENSION: &str = "source";
/// The most values EMF accepts for one metric on one line.
pub const MAX_VALUES: usize = 100;

/// Statuses counted per line: how many events this invocation moved into each (redeliveries not included;
/// `canceled` counts the events its messages superseded).
pub const STATUS_METRICS: [Status; 10] = [
    Status::Completed,
    Status::Failed,
    Status::Dropped,
    Status::Duplicate,
    Status::Canceled,
    Status::Disabled,
    Status::Rejected,
    Status::Queued,
    Status::Errored,
    Status::Waiting,
];
/// Records handled.
pub const RECORDS: &str = "records";
/// Records returned to the queue for a retry (batch item failures).
pub const RETRIES: &str = "retries";
/// Records moved to the dead-letter queue.
pub const DEAD_LETTERED: &str = "dead_lettered";
/// Events completed as ties (same order key as an earlier event, other content).
pub const TIES: &str = "ties";
/// `in_order` events completed although older than the last applied one.
pub const OUT_OF_ORDER: &str = "out_of_order";
/// Messages repeating an event already done.
pub const REDELIVERED: &str = "redelivered";
/// Records the engine could not process (storage failure, a bug, a panic).
pub const ENGINE_ERRORS: &str = "engine_errors";
/// Milliseconds the handler spent on each record.
pub const HANDLER_DURATION: &str = "handler_duration";
/// Milliseconds each destination write took, until its result was settled.
pub const WRITE_DURATION: &str = "write_duration";
/// Milliseconds from the external system's `updated_at` to completion, per completed event.
pub const LATENCY_SINCE_UPDATED_AT: &str = "latency_since_updated_at";
/// Milliseconds from the first receipt to completion, per completed event.
pub const LATENCY_SINCE_RECEIVED_AT: &str = "latency_since_received_at";

const COUNTS: [&str; 7] = [RECORDS, RETRIES, DEAD_LETTERED, TIES, OUT_OF_ORDER, REDELIVERED, ENGINE_ERRORS];
const SERIES: [&str; 4] = [HANDLER_DURATION, WRITE_DURATION, LATENCY_SINCE_UPDATED_AT, LATENCY_SINCE_RECEIVED_AT];

/// Where the metrics go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// The CloudWatch namespace.
    pub namespace: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { namespace: DEFAULT_NAMESPACE.to_owned() }
    }
}

/// One record of a batch, as the metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// How it ended.
    pub result: &'a RecordResult,
    /// Whether it was returned to the queue for a retry.
    pub retried: bool,
    /// How long the handler spent on it.
    pub duration: Duration,
}

/// The function dimension of `name:version` (or a bare name): the name alone, so a deployment adds no new series.
pub fn function_dimension(function: Option<&str>) -> String {
    function.and_then(|f| f.split(':').next()).filter(|name| !name.is_empty()).unwrap_or(UNKNOWN).to_owned()
}

/// The EMF lines of one invocation: one per source (sorted), plus continuation lines for series over
/// [`MAX_VALUES`] values. None for an empty batch.
pub fn emf_lines(config: &MetricsConfig, function: &str, at: DateTime<Utc>, records: &[Observed<'_>]) -> Vec<String> {
    let mut sources: BTreeMap<String, Figures> = BTreeMap::new();
    for record in records {
        let source = match record.result {
            RecordResult::Processed(outcome) => outcome.facts.source().unwrap_or(UNKNOWN),
            RecordResult::NotStarted | RecordResult::Failed(_) => UNKNOWN,
        };
        sources.entry(source.to_owned()).or_default().add(record);
    }
    let mut lines = Vec::new();
    for (source, figures) in &sources {
        let chunks = figures.series.values().map(|v| v.len().div_ceil(MAX_VALUES)).max().unwrap_or(0).max(1);
        for chunk in 0..chunks {
            let line = Line { config, function, source, at };
            lines.push(line.render(figures, chunk).to_string());
        }
    }
    lines
}

/// What one source's records add up to.
struct Figures {
    counts: BTreeMap<&'static str, u64>,
    series: BTreeMap<&'static str, Vec<f64>>,
}

impl Default for Figures {
    fn default() -> Self {
        let statuses = STATUS_METRICS.iter().map(|s| s.as_str());
        Self {
            counts: statuses.chain(COUNTS).map(|name| (name, 0)).collect(),
            series: SERIES.iter().map(|name| (*name, Vec::new())).collect(),
        }
    }
}

impl Figures {
    fn add(&mut self, record: &Observed<'_>) {
        self.count(RECORDS, 1);
        self.count(RETRIES, u64::from(record.retried));
        self.value(HANDLER_DURATION, Some(record.duration));
        match record.result {
            RecordResult::Processed(outcome) => self.add_outcome(outcome),
            RecordResult::Failed(_) => self.count(ENGINE_ERRORS, 1),
            RecordResult::NotStarted => {}
        }
    }

    fn add_outcome(&mut self, outcome: &Outcome) {
        let facts = &outcome.facts;
        // The processor's own outcome for an engine error that can never succeed: no status, dead-lettered.
        self.count(ENGINE_ERRORS, u64::from(outcome.status.is_none()));
        self.count(DEAD_LETTERED, u64::from(outcome.disposition == Disposition::DeadLetter));
        self.count(REDELIVERED, u64::from(outcome.redelivered));
        self.count(Status::Canceled.as_str(), u64::from(facts.canceled));
        self.value(WRITE_DURATION, facts.write_duration);
        let Some(status) = outcome.status.filter(|_| facts.transitioned && !outcome.redelivered) else {
            return;
        };
        if STATUS_METRICS.contains(&status) {
            self.count(status.as_str(), 1);
        }
        if status == Status::Completed {
            self.count(TIES, u64::from(facts.tie));
            self.count(OUT_OF_ORDER, u64::from(facts.out_of_order));
            if let Some(done) = facts.completed_at {
                self.value(LATENCY_SINCE_UPDATED_AT, facts.external_at.map(|at| done - at));
                self.value(LATENCY_SINCE_RECEIVED_AT, facts.received_at.map(|at| done - at));
            }
        }
    }

    fn count(&mut self, name: &'static str, by: u64) {
        *self.counts.entry(name).or_default() += by;
    }

    /// Adds a duration in milliseconds; a negative one (clock skew between systems) counts as zero.
    fn value(&mut self, name: &'static str, duration: Option<Duration>) {
        if let Some(duration) = duration {
            let ms = duration.num_microseconds().map_or(duration.num_milliseconds() as f64, |us| us as f64 / 1000.0);
            self.series.entry(name).or_default().push(ms.max(0.0));
        }
    }
}

/// One EMF line's fixed parts.
struct Line<'a> {
    config: &'a MetricsConfig,
    function: &'a str,
    source: &'a str,
    at: DateTime<Utc>,
}

impl Line<'_> {
    /// Line `chunk` of a source: the counts and the first values of each series on line 0, the next values of the
    /// series still going on the following lines.
    fn render(&self, figures: &Figures, chunk: usize) -> Value {
        let mut members = Map::new();
        let mut declared = Vec::new();
        if chunk == 0 {
            for (name, count) in &figures.counts {
                members.insert((*name).to_owned(), json!(count));
                declared.push(json!({ "Name": name, "Unit": "Count" }));
            }
        }
        for (name, values) in &figures.series {
            let part: Vec<f64> = values.iter().skip(chunk * MAX_VALUES).take(MAX_VALUES).copied().collect();
            if !part.is_empty() {
                members.insert((*name).to_owned(), json!(part));
                declared.push(json!({ "Name": name, "Unit": "Milliseconds" }));
            }
        }
        members.insert(FUNCTION_DIMENSION.to_owned(), json!(self.function));
        members.insert(SOURCE_DIMENSION.to_owned(), json!(self.source));
        members.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": self.at.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": self.config.namespace,
                    // Per source, and per function across sources (what the alarms watch).
                    "Dimensions": [[FUNCTION_DIMENSION, SOURCE_DIMENSION], [FUNCTION_DIMENSION]],
                    "Metrics": declared,
                }],
            }),
        );
        Value::Object(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synctrail::engine::OutcomeFacts;
    use synctrail::model::{EntityKey, EventId};

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_777_636_800 + seconds, 0).expect("valid time")
    }

    /// An outcome of an event of `source` that this message moved to `status`.
    fn processed(source: &str, status: Status, facts: OutcomeFacts) -> Outcome {
        let entity = EntityKey::new("default", source, "issue", "1").expect("valid key");
        Outcome {
            event_id: Some(EventId::parse("e-1").expect("valid id")),
            status: Some(status),
            redelivered: false,
            disposition: Disposition::Ack,
            facts: OutcomeFacts { entity: Some(entity), transitioned: true, ..facts },
        }
    }

    fn outcome(source: &str, status: Status, facts: OutcomeFacts) -> RecordResult {
        RecordResult::Processed(processed(source, status, facts))
    }

    fn observed(result: &RecordResult) -> Observed<'_> {
        Observed { result, retried: false, duration: Duration::milliseconds(4) }
    }

    fn lines(records: &[Observed<'_>]) -> Vec<Value> {
        emf_lines(&MetricsConfig::default(), "synctrail-processor", t(60), records)
            .iter()
            .map(|line| serde_json::from_str(line).expect("every line is JSON"))
            .collect()
    }

    /// Checks a line against the EMF specification and returns its declared metric names.
    fn assert_emf(line: &Value) -> Vec<String> {
        let directive = &line["_aws"];
        assert!(directive["Timestamp"].is_i64(), "{line}");
        let metrics = directive["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics is an array");
        assert_eq!(metrics.len(), 1, "{line}");
        assert_eq!(metrics[0]["Namespace"], json!(DEFAULT_NAMESPACE));
        assert_eq!(metrics[0]["Dimensions"], json!([["function", "source"], ["function"]]));
        for dimension in ["function", "source"] {
            assert!(line[dimension].is_string(), "dimension {dimension} has a member: {line}");
        }
        let declared = metrics[0]["Metrics"].as_array().expect("Metrics is an array");
        declared
            .iter()
            .map(|metric| {
                let name = metric["Name"].as_str().expect("a metric has a Name");
                assert!(["Count", "Milliseconds"].contains(&metric["Unit"].as_str().unwrap_or("")), "{metric}");
                let value = &line[name];
                let values = value.as_array().cloned().unwrap_or_else(|| vec![value.clone()]);
                assert!(!values.is_empty() && values.len() <= MAX_VALUES, "{name}: {value}");
                assert!(values.iter().all(Value::is_number), "{name}: {value}");
                name.to_owned()
            })
            .collect()
    }

    #[test]
    fn a_batch_of_one_source_makes_one_line_in_the_emf_shape() {
        let done = outcome("github", Status::Completed, OutcomeFacts::default());
        let lines = lines(&[observed(&done), observed(&done)]);
        assert_eq!(lines.len(), 1);
        let names = assert_emf(&lines[0]);
        assert!(names.contains(&"completed".to_owned()) && names.contains(&HANDLER_DURATION.to_owned()));
        assert_eq!(lines[0]["_aws"]["Timestamp"], json!(t(60).timestamp_millis()));
        assert_eq!(
            (lines[0]["function"].clone(), lines[0]["source"].clone()),
            (json!("synctrail-processor"), json!("github"))
        );
        assert_eq!(lines[0]["completed"], json!(2));
        assert_eq!(lines[0]["records"], json!(2));
        assert_eq!(lines[0][HANDLER_DURATION], json!([4.0, 4.0]));
        assert_eq!(lines[0]["failed"], json!(0), "zero counts are reported, so alarms see data");
    }

    #[test]
    fn a_batch_mixing_sources_makes_one_line_per_source_and_unknown_for_records_without_one() {
        let github = outcome("github", Status::Completed, OutcomeFacts::default());
        let shopify = outcome("shopify", Status::Dropped, OutcomeFacts::default());
        let not_started = RecordResult::NotStarted;
        let records = [observed(&github), observed(&shopify), Observed { retried: true, ..observed(&not_started) }];
        let lines = lines(&records);
        let sources: Vec<&Value> = lines.iter().map(|l| &l["source"]).collect();
        assert_eq!(sources, [&json!("github"), &json!("shopify"), &json!(UNKNOWN)]);
        lines.iter().for_each(|l| drop(assert_emf(l)));
        assert_eq!((lines[1]["dropped"].clone(), lines[1]["completed"].clone()), (json!(1), json!(0)));
        assert_eq!(lines[2][RETRIES], json!(1));
    }

    #[test]
    fn statuses_count_only_what_the_message_changed_and_cancellations_count_for_the_canceler() {
        let queued = outcome("github", Status::Queued, OutcomeFacts { canceled: 1, ..OutcomeFacts::default() });
        let mut already_queued = processed("github", Status::Queued, OutcomeFacts::default());
        already_queued.facts.transitioned = false;
        let found = RecordResult::Processed(already_queued);
        let again = Outcome { redelivered: true, ..processed("github", Status::Completed, OutcomeFacts::default()) };
        let again = RecordResult::Processed(again);
        let lines = lines(&[observed(&queued), observed(&found), observed(&again)]);
        assert_eq!(lines[0]["queued"], json!(1));
        assert_eq!(lines[0]["canceled"], json!(1));
        assert_eq!(lines[0]["completed"], json!(0), "a redelivery is not a second completion");
        assert_eq!(lines[0][REDELIVERED], json!(1));
    }

    #[test]
    fn ties_out_of_order_and_latencies_come_from_completed_events() {
        let facts = OutcomeFacts {
            tie: true,
            out_of_order: true,
            external_at: Some(t(0)),
            received_at: Some(t(50)),
            completed_at: Some(t(52)),
            write_duration: Some(Duration::milliseconds(15)),
            ..OutcomeFacts::default()
        };
        let done = outcome("erp", Status::Completed, facts.clone());
        let waiting = outcome("erp", Status::Waiting, facts);
        let lines = lines(&[observed(&done), observed(&waiting)]);
        assert_eq!((lines[0][TIES].clone(), lines[0][OUT_OF_ORDER].clone()), (json!(1), json!(1)));
        assert_eq!(lines[0][LATENCY_SINCE_UPDATED_AT], json!([52_000.0]));
        assert_eq!(lines[0][LATENCY_SINCE_RECEIVED_AT], json!([2_000.0]));
        assert_eq!(lines[0][WRITE_DURATION], json!([15.0, 15.0]));
        assert_eq!(lines[0]["waiting"], json!(1));
    }

    #[test]
    fn a_latency_from_a_clock_ahead_of_ours_counts_as_zero() {
        let facts = OutcomeFacts { external_at: Some(t(10)), completed_at: Some(t(5)), ..OutcomeFacts::default() };
        let done = outcome("github", Status::Completed, facts);
        assert_eq!(lines(&[observed(&done)])[0][LATENCY_SINCE_UPDATED_AT], json!([0.0]));
    }

    #[test]
    fn engine_errors_and_dead_letters_are_counted() {
        let failed = RecordResult::Failed("storage failed".to_owned());
        let dead = RecordResult::Processed(Outcome {
            event_id: None,
            status: None,
            redelivered: false,
            disposition: Disposition::DeadLetter,
            facts: OutcomeFacts::default(),
        });
        let lines = lines(&[Observed { retried: true, ..observed(&failed) }, observed(&dead)]);
        assert_eq!(lines[0]["source"], json!(UNKNOWN));
        assert_eq!(lines[0][ENGINE_ERRORS], json!(2));
        assert_eq!(lines[0][DEAD_LETTERED], json!(1));
        assert_eq!(lines[0][RETRIES], json!(1));
    }

    #[test]
    fn series_longer_than_emf_allows_continue_on_lines_that_carry_only_them() {
        let done = outcome("github", Status::Completed, OutcomeFacts::default());
        let records = vec![observed(&done); MAX_VALUES + 5];
        let lines = lines(&records);
        assert_eq!(lines.len(), 2);
        assert_eq!(assert_emf(&lines[1]), [HANDLER_DURATION]);
        assert_eq!(lines[0][HANDLER_DURATION].as_array().map(Vec::len), Some(MAX_VALUES));
        assert_eq!(lines[1][HANDLER_DURATION].as_array().map(Vec::len), Some(5));
        assert_eq!(lines[0]["completed"], json!(MAX_VALUES + 5), "counts are on the first line only");
        assert!(lines[1].get("completed").is_none());
    }

    #[test]
    fn an_empty_batch_prints_nothing() {
        assert!(lines(&[]).is_empty());
    }

    #[test]
    fn the_function_dimension_drops_the_version() {
        assert_eq!(function_dimension(Some("synctrail-processor:42")), "synctrail-processor");
        assert_eq!(function_dimension(Some("processor-0:$LATEST")), "processor-0");
        assert_eq!(function_dimension(None), UNKNOWN);
    }

    #[test]
    fn the_namespace_is_the_configured_one() {
        let config = MetricsConfig { namespace: "acme/sync".to_owned() };
        let done = outcome("github", Status::Completed, OutcomeFacts::default());
        let line = &emf_lines(&config, "f", t(0), &[observed(&done)])[0];
        let line: Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], json!("acme/sync"));
    }
}
