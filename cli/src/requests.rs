//! AWS request counts, as `stats` and `bench` report them: per service and operation, the framework's own
//! requests (event store, payloads, queue) apart from the destination's (the DynamoDB mirror), and per event.
//!
//! The counts come from the SDK clients' [`RequestCounter`](synctrail::store::aws::RequestCounter)s: request
//! attempts (retries included) made by *this process* — not a metric of the deployment.

use crate::output::Table;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;

/// Request attempts per (service, operation), as a `RequestCounter` snapshot holds them.
pub type Counts = BTreeMap<(String, String), u64>;

/// DynamoDB operations that write.
pub const DYNAMODB_WRITES: [&str; 5] = ["PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"];
/// DynamoDB operations that read.
pub const DYNAMODB_READS: [&str; 5] = ["GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"];

/// One operation's count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperationCount {
    /// `DynamoDB`, `S3` or `SQS`.
    pub service: String,
    /// The API operation, e.g. `TransactWriteItems`.
    pub operation: String,
    /// Request attempts, retries included.
    pub requests: u64,
    /// Requests per event, when the figures are per event.
    pub per_event: Option<f64>,
}

/// Requests per event, summed by kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerEvent {
    /// The framework's DynamoDB writes (event records and heads).
    pub dynamodb_writes: f64,
    /// The framework's DynamoDB reads.
    pub dynamodb_reads: f64,
    /// S3 `PutObject` (payload archive).
    pub s3_puts: f64,
    /// S3 `GetObject` (payloads read back).
    pub s3_gets: f64,
    /// Every SQS request (the local event source's receives, deletes and depth polls included).
    pub sqs: f64,
    /// Every framework request.
    pub framework_total: f64,
    /// The destination's DynamoDB writes (mirror rows and effects).
    pub destination_writes: f64,
    /// The destination's DynamoDB reads.
    pub destination_reads: f64,
    /// Every destination request.
    pub destination_total: f64,
}

/// The request figures of a command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestFigures {
    /// What the counts cover.
    pub scope: String,
    /// Events the per-event figures divide by.
    pub events: Option<u64>,
    /// The framework's own requests: event store (DynamoDB), payloads (S3) and queue (SQS).
    pub framework: Vec<OperationCount>,
    /// The destination's requests (the DynamoDB mirror, counted apart: it stands for the system synced to).
    pub destination: Vec<OperationCount>,
    /// Sums per event, when `events` is known.
    pub per_event: Option<PerEvent>,
}

/// What `after` counted that `before` had not.
pub fn since(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .map(|(key, n)| (key.clone(), n.saturating_sub(before.get(key).copied().unwrap_or(0))))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The sum of `counts` over `service`'s operations that `keep` accepts.
pub fn sum(counts: &Counts, service: &str, keep: impl Fn(&str) -> bool) -> u64 {
    counts.iter().filter(|((s, op), _)| s == service && keep(op)).map(|(_, n)| n).sum()
}

/// Figures over `framework` and `destination` counts, per event when `events` is given (and not zero).
pub fn figures(
    scope: impl Into<String>,
    framework: &Counts,
    destination: &Counts,
    events: Option<u64>,
) -> RequestFigures {
    let per = |n: u64| events.filter(|e| *e > 0).map(|e| n as f64 / e as f64);
    let list = |counts: &Counts| {
        counts
            .iter()
            .map(|((service, operation), n)| OperationCount {
                service: service.clone(),
                operation: operation.clone(),
                requests: *n,
                per_event: per(*n),
            })
            .collect()
    };
    let per_event = events.filter(|e| *e > 0).map(|e| {
        let e = e as f64;
        let writes = |c: &Counts| sum(c, "DynamoDB", |op| DYNAMODB_WRITES.contains(&op)) as f64 / e;
        let reads = |c: &Counts| sum(c, "DynamoDB", |op| DYNAMODB_READS.contains(&op)) as f64 / e;
        let total = |c: &Counts| c.values().sum::<u64>() as f64 / e;
        PerEvent {
            dynamodb_writes: writes(framework),
            dynamodb_reads: reads(framework),
            s3_puts: sum(framework, "S3", |op| op == "PutObject") as f64 / e,
            s3_gets: sum(framework, "S3", |op| op == "GetObject") as f64 / e,
            sqs: sum(framework, "SQS", |_| true) as f64 / e,
            framework_total: total(framework),
            destination_writes: writes(destination),
            destination_reads: reads(destination),
            destination_total: total(destination),
        }
    });
    RequestFigures {
        scope: scope.into(),
        events,
        framework: list(framework),
        destination: list(destination),
        per_event,
    }
}

/// Writes the figures as text: one table of operations (framework, then destination), then the sums per event.
pub fn write_figures(out: &mut dyn Write, f: &RequestFigures) -> std::io::Result<()> {
    writeln!(out, "AWS requests ({}):", f.scope)?;
    let per_event = f.events.is_some();
    let mut headers = vec!["made by", "service", "operation", "requests"];
    if per_event {
        headers.push("per event");
    }
    let mut table = Table::new(&headers).align_right(3).align_right(4);
    for (who, counts) in [("framework", &f.framework), ("destination", &f.destination)] {
        for c in counts {
            let mut row = vec![who.to_owned(), c.service.clone(), c.operation.clone(), c.requests.to_string()];
            if per_event {
                row.push(c.per_event.map_or_else(|| "-".to_owned(), |p| format!("{p:.2}")));
            }
            table.row(row);
        }
    }
    if table.is_empty() {
        writeln!(out, "  none")?;
    } else {
        table.write(out)?;
    }
    if let (Some(p), Some(events)) = (&f.per_event, f.events) {
        writeln!(
            out,
            "per event ({events} events): framework {:.2} DynamoDB writes, {:.2} DynamoDB reads, {:.2} S3 PUTs, \
             {:.2} S3 GETs, {:.2} SQS requests ({:.2} in all); destination {:.2} writes, {:.2} reads",
            p.dynamodb_writes,
            p.dynamodb_reads,
            p.s3_puts,
            p.s3_gets,
            p.sqs,
            p.framework_total,
            p.destination_writes,
            p.destination_reads
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(entries: &[(&str, &str, u64)]) -> Counts {
        entries.iter().map(|(s, o, n)| ((s.to_string(), o.to_string()), *n)).collect()
    }

    #[test]
    fn figures_split_by_kind_and_divide_by_events() {
        let before = counts(&[("DynamoDB", "PutItem", 5)]);
        let after = counts(&[
            ("DynamoDB", "PutItem", 25),
            ("DynamoDB", "TransactWriteItems", 40),
            ("DynamoDB", "GetItem", 10),
            ("S3", "PutObject", 20),
            ("SQS", "ReceiveMessage", 4),
        ]);
        let framework = since(&before, &after);
        assert_eq!(framework.get(&("DynamoDB".into(), "PutItem".into())), Some(&20));
        let destination = counts(&[("DynamoDB", "BatchGetItem", 20), ("DynamoDB", "TransactWriteItems", 20)]);
        let f = figures("test", &framework, &destination, Some(20));
        let p = f.per_event.clone().unwrap_or_else(|| panic!("per event"));
        assert_eq!((p.dynamodb_writes, p.dynamodb_reads, p.s3_puts, p.sqs), (3.0, 0.5, 1.0, 0.2));
        assert_eq!((p.destination_writes, p.destination_reads, p.destination_total), (1.0, 1.0, 2.0));
        let mut text = Vec::new();
        assert!(write_figures(&mut text, &f).is_ok());
        let text = String::from_utf8_lossy(&text);
        assert!(
            text.contains("framework    DynamoDB  TransactWriteItems") && text.contains("3.00 DynamoDB writes"),
            "{text}"
        );
        assert_eq!(figures("none", &Counts::new(), &Counts::new(), None).per_event, None);
    }
}
