//! `synctrail setup`: creates the backend's resources. Embedded: the home directory and its database. AWS (for
//! development endpoints such as moto or LocalStack; production uses the SAM template): the table with its
//! indexes and TTL, the payload bucket with its lifecycle, the ingest queue and its dead-letter queue with the
//! redrive policy. What exists already is kept, so running it twice is harmless.

use super::{create_aws, Context};
use crate::args::{BackendKind, SetupArgs};
use crate::backend::env_lines;
use crate::error::CliError;
use crate::output::write_json;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

/// What `setup --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    /// `embedded` or `aws`.
    pub backend: BackendKind,
    /// The embedded home.
    pub home: Option<PathBuf>,
    /// The DynamoDB table.
    pub table: Option<String>,
    /// The S3 bucket.
    pub bucket: Option<String>,
    /// The ingest queue's URL.
    pub queue_url: Option<String>,
    /// The dead-letter queue's URL.
    pub dlq_url: Option<String>,
    /// Receives after which a message goes to the dead-letter queue.
    pub max_receives: u32,
    /// The endpoint the resources were created at (`None`: AWS).
    pub endpoint_url: Option<String>,
    /// Shell lines that select this backend for later commands.
    pub env: Vec<String>,
}

/// Runs `synctrail setup`.
pub async fn execute(ctx: &Context, args: &SetupArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let report = match ctx.backend {
        BackendKind::Embedded => {
            drop(ctx.open().await?);
            let home = ctx.home.clone();
            SetupReport {
                backend: BackendKind::Embedded,
                env: vec![
                    "export SYNCTRAIL_BACKEND=embedded".to_owned(),
                    format!("export SYNCTRAIL_HOME={}", home.display()),
                ],
                home: Some(home),
                table: None,
                bucket: None,
                queue_url: None,
                dlq_url: None,
                max_receives: crate::config::MAX_RECEIVES,
                endpoint_url: None,
            }
        }
        BackendKind::Aws => {
            let created = create_aws(&ctx.aws, &args.prefix, args.max_receives).await?;
            let config = created.config(ctx.aws.endpoint_url.clone(), None);
            SetupReport {
                backend: BackendKind::Aws,
                home: None,
                env: env_lines(&config),
                table: Some(created.table),
                bucket: Some(created.bucket),
                queue_url: Some(created.queue_url),
                dlq_url: Some(created.dlq_url),
                max_receives: args.max_receives,
                endpoint_url: config.endpoint_url,
            }
        }
    };
    if ctx.json {
        return write_json(out, &report);
    }
    write_report(out, &report)?;
    Ok(())
}

fn write_report(out: &mut dyn Write, r: &SetupReport) -> std::io::Result<()> {
    match r.backend {
        BackendKind::Embedded => {
            let home = r.home.as_ref().map(|h| h.display().to_string()).unwrap_or_default();
            writeln!(out, "embedded backend ready in {home} (created, or found as it was)")?;
        }
        BackendKind::Aws => {
            let at = r.endpoint_url.as_deref().map_or_else(|| "on AWS".to_owned(), |url| format!("at {url}"));
            writeln!(out, "AWS resources ready {at} (created, or found and brought in line):")?;
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
            writeln!(
                out,
                "  table            {} (indexes by_status, by_entity, by_lease, by_waiting_for; TTL on ttl)",
                dash(&r.table)
            )?;
            writeln!(out, "  bucket           {} (public access blocked; payload lifecycle)", dash(&r.bucket))?;
            writeln!(out, "  queue            {}", dash(&r.queue_url))?;
            writeln!(out, "  dead letters     {} (after {} receives)", dash(&r.dlq_url), r.max_receives)?;
        }
    }
    writeln!(out, "\nselect it for later commands with:\n")?;
    for line in &r.env {
        writeln!(out, "{line}")?;
    }
    if r.endpoint_url.is_some() {
        writeln!(
            out,
            "\non moto, also `export SYNCTRAIL_SERIALIZE_DYNAMODB=true` (or pass --serialize-dynamodb) before `run`, \
             `demo` or `bench`: moto does not isolate concurrent DynamoDB transactions"
        )?;
    }
    Ok(())
}
