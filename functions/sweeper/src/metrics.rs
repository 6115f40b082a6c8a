//! The sweeper's CloudWatch Embedded Metric Format line: what one sweep found, per function (the stalled-leases
//! alarm watches `stalled_leases`). `dead_letters_discarded` counts messages, not events.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use synctrail::engine::SweepReport;

/// The EMF line of one sweep by `function` at `at`, in `namespace`.
pub fn emf_line(report: &SweepReport, function: &str, namespace: &str, at: DateTime<Utc>) -> Value {
    let figures = [
        ("stalled_leases", report.examined),
        ("redriven", report.redriven.len()),
        ("waits_examined", report.waits_examined),
        ("waits_resumed", report.waits_resumed.len()),
        ("waits_failed", report.waits_failed.len()),
        ("dead_letters_recorded", report.dead_letters_recorded.len()),
        ("dead_letters_discarded", report.dead_letters_discarded.iter().map(|d| d.messages).sum()),
    ];
    let mut line = serde_json::Map::new();
    for (name, value) in figures {
        line.insert(name.to_owned(), json!(value));
    }
    line.insert("function".to_owned(), json!(function));
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
    use synctrail::engine::Discarded;
    use synctrail::model::{EventId, Status};

    #[test]
    fn a_sweep_line_declares_every_figure_with_its_member() {
        let discarded =
            Discarded { event_id: EventId::parse("order-77:v1").expect("id"), status: Status::Completed, messages: 10 };
        let report = SweepReport { examined: 3, dead_letters_discarded: vec![discarded], ..SweepReport::default() };
        let line = emf_line(&report, "synctrail-sweeper", "synctrail", DateTime::UNIX_EPOCH);
        let declared = line["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().expect("metrics").clone();
        assert_eq!(declared.len(), 7);
        for metric in declared {
            let name = metric["Name"].as_str().expect("name");
            assert!(line[name].is_number(), "{name} has a member");
        }
        assert_eq!(line["stalled_leases"], json!(3));
        assert_eq!(line["dead_letters_discarded"], json!(10), "messages, not events");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["function"]]));
        assert_eq!(line["function"], json!("synctrail-sweeper"));
    }
}
