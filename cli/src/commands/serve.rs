//! `synctrail serve`: the ingest Lambda's webhook handler on a local HTTP server (`POST /webhooks/{source}`,
//! 127.0.0.1 by default) over the configured backend, embedded or AWS. Sources and secrets come from
//! `SYNCTRAIL_WEBHOOK_*` (secrets named by `…_ARN` are read from Secrets Manager, as on Lambda). It only queues:
//! `synctrail run --follow` processes what arrives.

use super::Context;
use crate::args::ServeArgs;
use crate::backend::AnyBackend;
use crate::error::CliError;
use crate::output::write_json;
use crate::serve::{ServeOptions, Server};
use serde::Serialize;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use synctrail::ingress::synctrail_vars;
use synctrail_ingest::{ingress_from_vars, Ingest, IngestInitError};

/// A server started by [`start`], with the backend it stores into.
pub struct Serving {
    /// The server; stop it with [`Server::stop`].
    pub server: Server,
    /// The backend the handler queues into and records rejections in.
    pub backend: AnyBackend,
    /// The configured sources, by route name.
    pub sources: Vec<String>,
}

/// What `serve --json` prints once it listens.
#[derive(Debug, Serialize)]
struct Listening<'a> {
    url: String,
    route: &'static str,
    sources: &'a [String],
    backend: String,
}

/// Opens the backend, builds the handler from `webhook_vars` (`SYNCTRAIL_WEBHOOK_*`; referenced secrets read from
/// Secrets Manager at the backend's endpoint) and starts listening.
pub async fn start(ctx: &Context, args: &ServeArgs, webhook_vars: Vec<(String, String)>) -> Result<Serving, CliError> {
    let backend = ctx.open().await?;
    let engine = Arc::new(ctx.engine(&backend)?);
    let ingress = ingress_from_vars(webhook_vars, ctx.aws.endpoint_url.as_deref(), None).await?;
    let sources = ingress.config().sources.keys().cloned().collect();
    let options = ServeOptions {
        bind: args.bind,
        port: args.port,
        read_timeout: crate::duration::std_seconds(args.read_timeout.max(0.001)),
    };
    let server = Server::start(Arc::new(Ingest::new(ingress, engine)), &options)
        .await
        .map_err(|source| CliError::Listen { addr: SocketAddr::new(args.bind, args.port), source })?;
    Ok(Serving { server, backend, sources })
}

/// Runs `synctrail serve` until interrupted, or for `--max-duration` seconds.
pub async fn execute(ctx: &Context, args: &ServeArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let vars = synctrail_vars().map_err(IngestInitError::from)?;
    let serving = start(ctx, args, vars).await?;
    let url = format!("http://{}", serving.server.local_addr());
    if ctx.json {
        let listening = Listening {
            url,
            route: "POST /webhooks/{source}",
            sources: &serving.sources,
            backend: serving.backend.describe(),
        };
        write_json(out, &listening)?;
    } else {
        writeln!(out, "listening on {url}: POST /webhooks/{{source}} over {}", serving.backend.describe())?;
        match serving.sources.as_slice() {
            [] => writeln!(
                out,
                "no source is configured, so every delivery is answered 404: set SYNCTRAIL_WEBHOOK_SECRET_GITHUB (or \
                 _SHOPIFY, or another source with its mapping; docs/webhooks.md)"
            )?,
            sources => writeln!(out, "sources: {}", sources.join(", "))?,
        }
        writeln!(out, "deliveries are queued; process them with `synctrail run --follow` (Ctrl-C stops)")?;
    }
    out.flush()?;
    match args.max_duration {
        Some(seconds) => tokio::time::sleep(crate::duration::std_seconds(seconds)).await,
        None => std::future::pending::<()>().await,
    }
    serving.server.stop().await;
    Ok(())
}
