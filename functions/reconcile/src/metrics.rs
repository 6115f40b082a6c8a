//! The reconcile run's CloudWatch Embedded Metric Format line: its counts per kind, per function (the differences
//! alarm watches `differences` = missing + extra + different; `not_correctable` of those are of `in_order` types
//! and were sent no correction).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use synctrail::engine::reconcile::ReconcileReport;

/// The EMF line of one run by `function` at `at`, in `namespace`.
pub fn emf_line(report: &ReconcileReport, function: &str, namespace: &str, at: DateTime<Utc>) -> Value {
    let c = &report.counts;
    let figures = [
        ("differences", c.differences()),
        ("missing", c.missing),
        ("extra", c.extra),
        ("different", c.different),
        ("stale", c.stale),
        ("same", c.same),
        ("invalid", c.invalid),
        ("not_correctable", c.not_correctable),
        ("corrections_sent", if report.dry_run { 0 } else { report.sent }),
    ];
    let mut line = serde_json::Map::new();
    for (name, value) in figures {
        line.insert(name.to_owned(), json!(value));
    }
    line.insert("function".to_owned(), json!(function));
    line.insert("source".to_owned(), json!(report.source));
    line.insert("run_id".to_owned(), json!(report.run_id));
    let metrics: Vec<Value> = figures.iter().map(|(name, _)| json!({ "Name": name, "Unit": "Count" })).collect();
    line.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{ "Namespace": namespace, "Dimensions": [["function"]], "Metrics": metrics }],
        }),
    );
    Value::Object(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use synctrail::engine::reconcile::DiffCounts;

    #[test]
    fn a_run_line_declares_every_count_with_its_member_and_sums_the_differences() {
        let report = ReconcileReport {
            run_id: "r1".into(),
            dry_run: false,
            snapshot: "s3://b/k".into(),
            source: "shop".into(),
            entity_type: None,
            as_of: DateTime::UNIX_EPOCH,
            counts: DiffCounts {
                same: 7,
                missing: 1,
                extra: 2,
                stale: 4,
                different: 3,
                ignored: 0,
                invalid: 1,
                not_correctable: 2,
            },
            sent: 4,
            sent_now: 4,
            already_finished: false,
            entities: Vec::new(),
            invalid: Vec::new(),
            resumed_after: None,
            finished: true,
        };
        let line = emf_line(&report, "synctrail-reconcile", "synctrail", DateTime::UNIX_EPOCH);
        let declared = line["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().expect("metrics").clone();
        for metric in &declared {
            let name = metric["Name"].as_str().expect("name");
            assert!(line[name].is_number(), "{name} has a member");
        }
        assert_eq!(line["differences"], json!(6));
        assert_eq!(line["corrections_sent"], json!(4), "the in_order differences are not counted as sent");
        assert_eq!(line["not_correctable"], json!(2));
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["function"]]));
    }
}
