//! The backend a command works on. The command line's flags, over the environment, make the same typed
//! [`synctrail::config::Config`] the functions read, and the same builder ([`synctrail::compose`]) builds it: what
//! runs locally is what runs on Lambda. Commands see the built [`AnyBackend`].

use crate::args::BackendKind;
use crate::error::CliError;
use std::sync::Arc;
use synctrail::compose::{Composed, ComposedBackend};
use synctrail::destination::MirrorView;
use synctrail::store::aws::AwsConfig;

/// A built backend of either kind: the engine's ports, the mirror when it is the destination, and the backend's
/// own handles.
pub type AnyBackend = Composed;

/// What commands ask of a backend beyond its ports.
pub trait BackendExt {
    /// Which kind of backend this is.
    fn kind(&self) -> BackendKind;

    /// The global options that select this backend, for follow-up commands (`synctrail <these> show ID`).
    fn selector(&self) -> String;

    /// The reference mirror, for commands that read it (`records`, the demo's checks); an error naming the
    /// destination otherwise.
    fn mirror_view(&self, command: &str) -> Result<&Arc<dyn MirrorView>, CliError>;
}

impl BackendExt for Composed {
    fn kind(&self) -> BackendKind {
        match self.backend {
            ComposedBackend::Embedded { .. } => BackendKind::Embedded,
            ComposedBackend::Aws(_) => BackendKind::Aws,
        }
    }

    fn selector(&self) -> String {
        match &self.backend {
            ComposedBackend::Embedded { home, .. } => format!("--home {}", home.display()),
            ComposedBackend::Aws(parts) => {
                let (c, queue) = (&parts.config, &parts.backend.queue);
                let mut flags = format!(
                    "--backend aws --table {} --bucket {} --queue {} --dlq {}",
                    c.table,
                    c.bucket,
                    queue.queue_url(),
                    queue.dlq_url()
                );
                if let Some(url) = &c.endpoint_url {
                    flags.push_str(&format!(" --endpoint-url {url}"));
                }
                if c.serialize_dynamodb {
                    flags.push_str(" --serialize-dynamodb");
                }
                flags
            }
        }
    }

    fn mirror_view(&self, command: &str) -> Result<&Arc<dyn MirrorView>, CliError> {
        self.mirror.as_ref().ok_or_else(|| {
            CliError::InvalidArgument(format!(
                "`synctrail {command}` reads the reference mirror, but the destination is another one; look at \
                 your destination directly, or run with the mirror (SYNCTRAIL_DESTINATION=mirror)"
            ))
        })
    }
}

/// The `export` lines that select the AWS resources of `config` in a shell.
pub fn env_lines(config: &AwsConfig) -> Vec<String> {
    let mut lines = vec![
        "export SYNCTRAIL_BACKEND=aws".to_owned(),
        format!("export SYNCTRAIL_TABLE={}", config.table),
        format!("export SYNCTRAIL_BUCKET={}", config.bucket),
        format!("export SYNCTRAIL_QUEUE_URL={}", config.queue),
        format!("export SYNCTRAIL_DLQ_URL={}", config.dlq),
    ];
    if let Some(url) = &config.endpoint_url {
        lines.push(format!("export AWS_ENDPOINT_URL={url}"));
    }
    lines
}
