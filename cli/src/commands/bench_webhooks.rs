//! `synctrail bench webhooks`: the ingest function's handler alone, in this process, over the backend's queue —
//! `--webhooks` signed deliveries of the demo's real GitHub and Shopify payloads (each with its own delivery id) —
//! so the CPU per webhook and the queue sends per webhook can be read (the budget: ≤ 1 ms, one send).

use super::demo_webhooks::{as_headers, demo_ingress, signed_headers, SIGNED};
use super::Context;
use crate::args::BenchWebhookArgs;
use crate::cpu::process_cpu_time;
use crate::error::CliError;
use crate::output::{write_json, Table};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;
use synctrail::Invocation;
use synctrail_ingest::{Ingest, Request};

/// What `bench webhooks` measured.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookBenchReport {
    /// Deliveries handled.
    pub webhooks: usize,
    /// Deliveries per second (one after another).
    pub webhooks_per_second: f64,
    /// CPU of this process per delivery, µs: signature, mapping and the queue send.
    pub cpu_per_webhook_us: Option<f64>,
    /// Of which the signature check and the mapping alone (no send), µs.
    pub cpu_per_verdict_us: Option<f64>,
    /// Messages the queue gained per delivery.
    pub sends_per_webhook: f64,
    /// The answers, by status.
    pub answers: BTreeMap<u16, u64>,
}

/// One signed delivery.
struct Signed {
    source: &'static str,
    headers: Vec<(String, String)>,
    body: &'static [u8],
}

/// Runs `synctrail bench webhooks`.
pub async fn execute(ctx: &Context, args: &BenchWebhookArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let backend = ctx.open_fresh("bench", args.prefix.as_deref(), None).await?;
    let ingress = demo_ingress()?;
    let webhooks = usize::try_from(args.webhooks).unwrap_or(usize::MAX);
    let deliveries: Vec<Signed> = (0..webhooks)
        .map(|i| {
            let fixture = &SIGNED[i % SIGNED.len()];
            let mut headers = signed_headers(fixture, fixture.body);
            for (name, value) in &mut headers {
                if name == "X-GitHub-Delivery" || name == "X-Shopify-Event-Id" {
                    *value = format!("bench-{i}");
                }
            }
            Signed { source: fixture.source, headers, body: fixture.body }
        })
        .collect();

    let cpu_before = process_cpu_time();
    for d in &deliveries {
        std::hint::black_box(ingress.handle(d.source, &as_headers(&d.headers), d.body));
    }
    let verdicts_cpu = cpu_before.zip(process_cpu_time()).map(|(a, b)| (b - a).as_secs_f64());

    let depth = |d: synctrail::store::QueueDepth| d.visible + d.in_flight + d.delayed;
    let before = depth(backend.ports.queue.depth().await.map_err(CliError::store("measuring the queue"))?);
    let ingest = Ingest::new(ingress, Arc::new(ctx.engine(&backend)?));
    let invocation = Invocation { function: Some("bench-webhooks".into()), ..Invocation::default() };
    let mut answers = BTreeMap::new();
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    for d in &deliveries {
        let headers = as_headers(&d.headers);
        let path = format!("/webhooks/{}", d.source);
        let request = Request { method: "POST", path: &path, headers: &headers, body: d.body };
        *answers.entry(ingest.handle(&request, &invocation).await.status).or_default() += 1;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_before.zip(process_cpu_time()).map(|(a, b)| (b - a).as_secs_f64());
    let after = depth(backend.ports.queue.depth().await.map_err(CliError::store("measuring the queue"))?);
    let per = |seconds: f64| seconds * 1e6 / webhooks.max(1) as f64;
    let report = WebhookBenchReport {
        webhooks,
        webhooks_per_second: webhooks as f64 / wall.max(1e-9),
        cpu_per_webhook_us: cpu.map(per),
        cpu_per_verdict_us: verdicts_cpu.map(per),
        sends_per_webhook: after.saturating_sub(before) as f64 / webhooks.max(1) as f64,
        answers,
    };
    if ctx.json {
        return write_json(out, &report);
    }
    let us = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0} µs"));
    let mut table = Table::new(&["figure", "value"]).align_right(1);
    table.row(vec!["webhooks".into(), report.webhooks.to_string()]);
    table.row(vec!["webhooks per second".into(), format!("{:.0}", report.webhooks_per_second)]);
    table.row(vec!["CPU per webhook (verify, map, queue)".into(), us(report.cpu_per_webhook_us)]);
    table.row(vec!["of which verify and map".into(), us(report.cpu_per_verdict_us)]);
    table.row(vec!["queue messages per webhook".into(), format!("{:.2}", report.sends_per_webhook)]);
    for (status, n) in &report.answers {
        table.row(vec![format!("answered {status}"), n.to_string()]);
    }
    table.write(out)?;
    Ok(())
}
