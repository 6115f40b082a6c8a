//! The sweeper's CloudWatch Embedded Metric Format line: what one sweep found, per function (the stalled-leases
//! alarm watches `stalled_leases`). `settles_finished` counts settles cut short between the record and the head that
//! the sweep finished. `dead_letters_discarded` counts messages, not events. `verified` counts the
//! entities flagged `needs_verification` that were verified, `verify_differences` those that differed (repaired or
//! only reported), `verify_repaired` those repaired.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use synctrail::engine::SweepReport;
use synctrail::model::Verdict;

/// The EMF line of one sweep by `function` at `at`, in `namespace`.
pub fn emf_line(report: &SweepReport, function: &str, namespace: &str, at: DateTime<Utc>) -> Value {
    let figures = [
        ("stalled_leases", report.examined),
        ("redriven", report.redriven.len()),
        ("settles_finished", report.settles_finished.len()),
        ("waits_examined", report.waits_examined),
        ("waits_resumed", report.waits_resumed.len()),
        ("waits_failed", report.waits_failed.len()),
        ("dead_letters_recorded", report.dead_letters_recorded.len()),
        ("dead_letters_discarded", report.dead_letters_discarded.iter().map(|d| d.messages).sum()),
        ("verified", report.verified.len()),
        ("verify_differences", verdicts(report, &[Verdict::Differs, Verdict::Repaired])),
        ("verify_repaired", verdicts(report, &[Verdict::Repaired])),
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

/// How many verified entities have one of `verdicts`.
fn verdicts(report: &SweepReport, verdicts: &[Verdict]) -> usize {
    report.verified.iter().filter(|v| verdicts.contains(&v.verdict)).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use synctrail::engine::verify::VerifiedEntity;
    use synctrail::engine::Discarded;
    use synctrail::model::{EventId, Status};

    #[test]
    fn a_sweep_line_declares_every_figure_with_its_member() {
        let discarded =
            Discarded { event_id: EventId::parse("order-77:v1").expect("id"), status: Status::Completed, messages: 10 };
        let verified =
            |verdict| VerifiedEntity { entity_key: "t/s/stock/1".into(), verdict, detail: None, payloads_read: 0 };
        let report = SweepReport {
            examined: 3,
            dead_letters_discarded: vec![discarded],
            verified: vec![verified(Verdict::Equal), verified(Verdict::Repaired), verified(Verdict::Differs)],
            ..SweepReport::default()
        };
        let line = emf_line(&report, "synctrail-sweeper", "synctrail", DateTime::UNIX_EPOCH);
        let declared = line["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().expect("metrics").clone();
        assert_eq!(declared.len(), 11);
        for metric in declared {
            let name = metric["Name"].as_str().expect("name");
            assert!(line[name].is_number(), "{name} has a member");
        }
        assert_eq!(line["stalled_leases"], json!(3));
        assert_eq!(line["dead_letters_discarded"], json!(10), "messages, not events");
        assert_eq!(
            (&line["verified"], &line["verify_differences"], &line["verify_repaired"]),
            (&json!(3), &json!(2), &json!(1))
        );
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["function"]]));
        assert_eq!(line["function"], json!("synctrail-sweeper"));
    }
}
