//! Configuration, read once: one typed [`Config`] from the process environment (the functions) or from flags over
//! the environment (the CLI), with errors that name the variable and say what to set. [`crate::compose`] turns it
//! into the engine's ports; nothing else reads the environment.
//!
//! | variable | meaning |
//! |---|---|
//! | `SYNCTRAIL_BACKEND` | `aws` or `embedded`; unset: `aws` when `SYNCTRAIL_TABLE` is set, else `embedded` — except on Lambda (`AWS_LAMBDA_FUNCTION_NAME` set), where one of the two must be chosen explicitly |
//! | `SYNCTRAIL_TABLE`, `SYNCTRAIL_BUCKET`, `SYNCTRAIL_QUEUE_URL`, `SYNCTRAIL_DLQ_URL` | the AWS backend's resources (all required for it) |
//! | `AWS_ENDPOINT_URL`, `AWS_REGION` | a development endpoint (moto) and the region |
//! | `SYNCTRAIL_MAX_RECEIVES` | the queue's `maxReceiveCount` (the template sets it; unset: read from the redrive policy at start-up) |
//! | `SYNCTRAIL_HOME` | the embedded backend's directory (default `./.synctrail`, on Lambda `/tmp/synctrail`) |
//! | `SYNCTRAIL_DESTINATION` | `mirror` (the default: the reference mirror in the backend) or `http` (a team's endpoint: `SYNCTRAIL_DESTINATION_URL`, `_SECRET`, `_TIMEOUT_MS`, `_CONNECT_TIMEOUT_MS`, `_CONCURRENCY`; docs/destination-protocol.md) |
//! | `SYNCTRAIL_OUTBOUND` | `github` or `shopify`: the connector that writes `outbound` events into that system (`SYNCTRAIL_GITHUB_TOKEN`, `_API_URL`; `SYNCTRAIL_SHOPIFY_SHOP`, `_TOKEN`, `_API_URL`, `_API_VERSION`; `SYNCTRAIL_OUTBOUND_TIMEOUT_MS`, `_CONNECT_TIMEOUT_MS`, `_CONCURRENCY`; docs/connectors.md); unset: every event goes to the destination |
//! | `SYNCTRAIL_DEPENDENCIES` | dependency rules `TYPE.FIELD=NEEDED_TYPE`, comma-separated (spec §6) |
//! | `SYNCTRAIL_DELTA_FIELDS` | what the mirror adds for `in_order` types, `TYPE.DELTA_FIELD=TOTAL_FIELD` comma-separated (default `delta` into `quantity`) |
//! | `SYNCTRAIL_METRICS_NAMESPACE` | CloudWatch namespace of the EMF lines (default `synctrail`) |
//! | `SYNCTRAIL_SWEEP_LIMIT` | expired leases (and each other kind of thing) one sweep acts on (default 1000) |
//! | `SYNCTRAIL_REDRIVE_QUEUES` | `FUNCTION=QUEUE_URL`, comma-separated: with several processors (one per destination), a reprocess goes to the queue of the processor recorded on the event (AWS only) |
//! | `SYNCTRAIL_RECORD_CONCURRENCY` | entities of one batch processed side by side (default 4; one entity's records always one after another) |
//! | engine settings | see [`Settings::from_vars`] |

use crate::destination::delta_fields::{DeltaFields, DELTA_FIELDS_VARIABLE};
use crate::destination::dependencies::{DependencyRule, InvalidRule};
use crate::settings::{InvalidSetting, Settings};
use std::path::PathBuf;

/// Looks a variable up: the process environment, or command-line flags over it. Blank values count as unset (but
/// see [`counts_as_set`]).
pub type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment as [`Vars`] (blank values are unset, but for [`counts_as_set`]'s exceptions).
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| counts_as_set(name, v))
}

/// Whether the variable `name` holding `value` counts as set: when not blank, and always for the destination's
/// signing secret, so that a blank one is refused at start (counted as unset, it sent unsigned requests).
pub fn counts_as_set(name: &str, value: &str) -> bool {
    name == SIGNING_SECRET_VARIABLE || !value.trim().is_empty()
}

/// The HTTP destination's signing secret (`destination::http`, which may not be built in).
const SIGNING_SECRET_VARIABLE: &str = "SYNCTRAIL_DESTINATION_SECRET";

/// Whether the variable `name` configures the engine, its backend or its destination: a `SYNCTRAIL_*` variable other
/// than the webhook ones (`SYNCTRAIL_WEBHOOK_*`, the ingress's own, read by the ingest function and `serve`).
pub fn configures_the_engine(name: &str) -> bool {
    name.starts_with("SYNCTRAIL_") && !name.starts_with("SYNCTRAIL_WEBHOOK_")
}

/// The embedded backend's home when `SYNCTRAIL_HOME` is unset, off Lambda.
pub const DEFAULT_HOME: &str = "./.synctrail";
/// The embedded backend's home when `SYNCTRAIL_HOME` is unset, on Lambda (its only writable directory).
pub const LAMBDA_HOME: &str = "/tmp/synctrail";
/// The CloudWatch namespace when `SYNCTRAIL_METRICS_NAMESPACE` is unset.
pub const DEFAULT_METRICS_NAMESPACE: &str = "synctrail";
/// Expired leases (and each other kind of thing) one sweep acts on when `SYNCTRAIL_SWEEP_LIMIT` is unset.
pub const DEFAULT_SWEEP_LIMIT: usize = 1000;
/// Entities of one batch processed side by side when `SYNCTRAIL_RECORD_CONCURRENCY` is unset.
pub const DEFAULT_RECORD_CONCURRENCY: usize = 4;
/// Receives after which the embedded queue dead-letters a message (SQS `maxReceiveCount`).
pub const DEFAULT_MAX_RECEIVES: u32 = 5;

/// Everything a function or the CLI is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where events, payloads and the queue live.
    pub backend: BackendConfig,
    /// Where changes are applied.
    pub destination: DestinationConfig,
    /// The connector that writes `outbound` events into an external system; `None`: they go to the destination.
    #[cfg(feature = "http")]
    pub outbound: Option<crate::destination::connectors::OutboundConfig>,
    /// Rules that make an event wait for another entity (spec §6), applied in front of the destination.
    pub dependencies: Vec<DependencyRule>,
    /// How the reference mirror adds `in_order` deltas.
    pub delta_fields: DeltaFields,
    /// The engine's settings.
    pub settings: Settings,
    /// The CloudWatch namespace of the metrics.
    pub metrics_namespace: String,
    /// Expired leases one sweep looks at.
    pub sweep_limit: usize,
    /// Entities of one batch the processor handles side by side.
    pub record_concurrency: usize,
}

/// Which backend, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// A SQLite file of records, heads, queue and mirror, and one of payloads.
    Embedded(EmbeddedConfig),
    /// DynamoDB, S3 and SQS.
    Aws(AwsConfig),
}

/// Where the embedded backend lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// Its directory.
    pub home: PathBuf,
    /// Receives after which its queue dead-letters a message.
    pub max_receives: u32,
}

impl EmbeddedConfig {
    /// The embedded backend under `home`, dead-lettering after [`DEFAULT_MAX_RECEIVES`] receives.
    pub fn at(home: impl Into<PathBuf>) -> Self {
        Self { home: home.into(), max_receives: DEFAULT_MAX_RECEIVES }
    }
}

/// Where the AWS backend lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    /// The DynamoDB table of event records and heads.
    pub table: String,
    /// The S3 bucket of payloads.
    pub bucket: String,
    /// The ingest queue: its URL, or its name (then looked up with `GetQueueUrl`).
    pub queue: String,
    /// The dead-letter queue: its URL or name.
    pub dlq: String,
    /// An endpoint for every service (moto, LocalStack); `None`: AWS, or `AWS_ENDPOINT_URL` when set.
    pub endpoint_url: Option<String>,
    /// The region; `None`: from the environment or profile (`us-east-1` with an `endpoint_url`).
    pub region: Option<String>,
    /// Let one DynamoDB request at a time leave this process (moto needs it; AWS never does).
    pub serialize_dynamodb: bool,
    /// The queue's `maxReceiveCount`, when the configuration knows it (`SYNCTRAIL_MAX_RECEIVES`, set by the
    /// template): then a cold start reads nothing from SQS; unset: the redrive policy is read and checked.
    pub max_receives: Option<u32>,
}

/// Where changes are applied.
#[derive(Debug, Clone, Default)]
pub enum DestinationConfig {
    /// The reference mirror, kept in the backend (`SYNCTRAIL_DESTINATION=mirror`, the default).
    #[default]
    Mirror,
    /// A team's endpoint over HTTP (`SYNCTRAIL_DESTINATION=http`).
    #[cfg(feature = "http")]
    Http(Box<crate::destination::http::HttpDestinationConfig>),
}

/// A configuration that can't be used; each names the variable and what to set.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset.
    #[error("{name} is not set; {why}")]
    Missing {
        /// The variable.
        name: &'static str,
        /// Why it is needed.
        why: &'static str,
    },
    /// A variable's value can't be used.
    #[error("{name}={value:?} is invalid: expected {expected}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// On Lambda, neither backend was chosen: the embedded one would silently keep events in the sandbox's `/tmp`.
    #[error(
        "no backend is configured for this function: set SYNCTRAIL_TABLE, SYNCTRAIL_BUCKET, SYNCTRAIL_QUEUE_URL and \
         SYNCTRAIL_DLQ_URL (the AWS backend), or SYNCTRAIL_BACKEND=embedded with SYNCTRAIL_HOME to keep events in \
         the sandbox's own SQLite file (local emulators only: it is lost with the sandbox)"
    )]
    NoBackendOnLambda,
    /// An engine setting can't be used.
    #[error(transparent)]
    Settings(#[from] InvalidSetting),
    /// `SYNCTRAIL_DEPENDENCIES` can't be parsed.
    #[error("SYNCTRAIL_DEPENDENCIES: {0}")]
    Dependencies(#[from] InvalidRule),
    /// The HTTP destination's or the outbound connector's settings can't be used.
    #[cfg(feature = "http")]
    #[error(transparent)]
    HttpDestination(#[from] crate::destination::http::HttpConfigError),
}

impl Config {
    /// The defaults, on the embedded backend under `home`, with the mirror as the destination (tests and tools).
    pub fn embedded(home: impl Into<PathBuf>) -> Self {
        Self {
            backend: BackendConfig::Embedded(EmbeddedConfig::at(home)),
            destination: DestinationConfig::Mirror,
            #[cfg(feature = "http")]
            outbound: None,
            dependencies: Vec::new(),
            delta_fields: DeltaFields::default(),
            settings: Settings::default(),
            metrics_namespace: DEFAULT_METRICS_NAMESPACE.to_owned(),
            sweep_limit: DEFAULT_SWEEP_LIMIT,
            record_concurrency: DEFAULT_RECORD_CONCURRENCY,
        }
    }

    /// The configuration the process environment describes.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&env_var)
    }

    /// The configuration `vars` describe, engine settings starting from the defaults.
    pub fn from_vars(vars: Vars<'_>) -> Result<Self, ConfigError> {
        Self::from_vars_with(vars, Settings::default())
    }

    /// The configuration `vars` describe, engine settings starting from `settings`.
    pub fn from_vars_with(vars: Vars<'_>, settings: Settings) -> Result<Self, ConfigError> {
        let backend = BackendConfig::from_vars(vars)?;
        let settings = settings.overridden_by(vars)?;
        if matches!(backend, BackendConfig::Embedded(_)) && !settings.redrive_queues.is_empty() {
            return Err(ConfigError::Invalid {
                name: "SYNCTRAIL_REDRIVE_QUEUES",
                value: vars("SYNCTRAIL_REDRIVE_QUEUES").unwrap_or_default(),
                expected: "nothing with the embedded backend: it has one queue (routing needs the AWS backend)",
            });
        }
        #[cfg(not(feature = "http"))]
        if let Some(value) = vars("SYNCTRAIL_OUTBOUND") {
            return Err(ConfigError::Invalid {
                name: "SYNCTRAIL_OUTBOUND",
                value,
                expected: "nothing: this build has no outbound connectors (cargo feature `http` of synctrail)",
            });
        }
        Ok(Self {
            backend,
            destination: DestinationConfig::from_vars(vars)?,
            #[cfg(feature = "http")]
            outbound: crate::destination::connectors::OutboundConfig::from_lookup(vars)?,
            dependencies: DependencyRule::parse_list(&vars("SYNCTRAIL_DEPENDENCIES").unwrap_or_default())?,
            delta_fields: DeltaFields::parse(&vars(DELTA_FIELDS_VARIABLE).unwrap_or_default())?,
            settings,
            metrics_namespace: vars("SYNCTRAIL_METRICS_NAMESPACE")
                .map(|n| n.trim().to_owned())
                .unwrap_or_else(|| DEFAULT_METRICS_NAMESPACE.to_owned()),
            sweep_limit: positive(vars, "SYNCTRAIL_SWEEP_LIMIT")?.unwrap_or(DEFAULT_SWEEP_LIMIT),
            record_concurrency: positive(vars, "SYNCTRAIL_RECORD_CONCURRENCY")?.unwrap_or(DEFAULT_RECORD_CONCURRENCY),
        })
    }
}

impl BackendConfig {
    /// The backend `vars` choose (see the module's table).
    pub fn from_vars(vars: Vars<'_>) -> Result<Self, ConfigError> {
        let on_lambda = vars("AWS_LAMBDA_FUNCTION_NAME").is_some();
        match vars("SYNCTRAIL_BACKEND").as_deref().map(str::trim) {
            Some("aws") => Ok(Self::Aws(AwsConfig::from_vars(vars)?)),
            Some("embedded") => Ok(Self::Embedded(EmbeddedConfig::from_vars(vars, on_lambda)?)),
            Some(other) => Err(ConfigError::Invalid {
                name: "SYNCTRAIL_BACKEND",
                value: other.to_owned(),
                expected: "aws or embedded",
            }),
            None if vars("SYNCTRAIL_TABLE").is_some() => Ok(Self::Aws(AwsConfig::from_vars(vars)?)),
            None if on_lambda => Err(ConfigError::NoBackendOnLambda),
            None => Ok(Self::Embedded(EmbeddedConfig::from_vars(vars, false)?)),
        }
    }
}

impl EmbeddedConfig {
    /// `SYNCTRAIL_HOME` (default [`DEFAULT_HOME`], or [`LAMBDA_HOME`] on Lambda).
    fn from_vars(vars: Vars<'_>, on_lambda: bool) -> Result<Self, ConfigError> {
        let default = if on_lambda { LAMBDA_HOME } else { DEFAULT_HOME };
        Ok(Self::at(vars("SYNCTRAIL_HOME").unwrap_or_else(|| default.to_owned())))
    }
}

impl AwsConfig {
    /// `SYNCTRAIL_TABLE`, `SYNCTRAIL_BUCKET`, `SYNCTRAIL_QUEUE_URL` and `SYNCTRAIL_DLQ_URL` (all required), plus
    /// `AWS_ENDPOINT_URL`, `AWS_REGION` and `SYNCTRAIL_SERIALIZE_DYNAMODB` when set.
    pub fn from_vars(vars: Vars<'_>) -> Result<Self, ConfigError> {
        let why = "the AWS backend needs its table, bucket, queue and dead-letter queue (`synctrail setup --backend \
                   aws` creates them and prints the settings)";
        let need =
            |name: &'static str| vars(name).map(|v| v.trim().to_owned()).ok_or(ConfigError::Missing { name, why });
        Ok(Self {
            table: need("SYNCTRAIL_TABLE")?,
            bucket: need("SYNCTRAIL_BUCKET")?,
            queue: need("SYNCTRAIL_QUEUE_URL")?,
            dlq: need("SYNCTRAIL_DLQ_URL")?,
            endpoint_url: vars("AWS_ENDPOINT_URL").map(|v| v.trim().to_owned()),
            region: vars("AWS_REGION").map(|v| v.trim().to_owned()),
            serialize_dynamodb: flag(vars, "SYNCTRAIL_SERIALIZE_DYNAMODB")?,
            max_receives: positive(vars, "SYNCTRAIL_MAX_RECEIVES")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        })
    }
}

impl DestinationConfig {
    /// `SYNCTRAIL_DESTINATION` (default `mirror`), and for `http` the variables of
    /// [`crate::destination::http::HttpDestinationConfig::from_lookup`].
    pub fn from_vars(vars: Vars<'_>) -> Result<Self, ConfigError> {
        match vars("SYNCTRAIL_DESTINATION").as_deref().map(str::trim) {
            None | Some("mirror") => Ok(Self::Mirror),
            #[cfg(feature = "http")]
            Some("http") => {
                Ok(Self::Http(Box::new(crate::destination::http::HttpDestinationConfig::from_lookup(vars)?)))
            }
            Some(other) => Err(ConfigError::Invalid {
                name: "SYNCTRAIL_DESTINATION",
                value: other.to_owned(),
                expected: if cfg!(feature = "http") { "mirror or http" } else { "mirror (this build has no http)" },
            }),
        }
    }

    /// The reference mirror is the destination.
    pub fn is_mirror(&self) -> bool {
        matches!(self, Self::Mirror)
    }
}

/// A whole number of at least 1, when set.
fn positive(vars: Vars<'_>, name: &'static str) -> Result<Option<usize>, ConfigError> {
    vars(name)
        .map(|value| {
            value.trim().parse().ok().filter(|n| *n > 0).ok_or(ConfigError::Invalid {
                name,
                value,
                expected: "a whole number of at least 1",
            })
        })
        .transpose()
}

/// `true`/`false` (also `1`/`0`), unset: false.
fn flag(vars: Vars<'_>, name: &'static str) -> Result<bool, ConfigError> {
    match vars(name).as_deref().map(str::trim) {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(ConfigError::Invalid { name, value: other.to_owned(), expected: "true or false" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_vars(&|name: &str| vars.get(name).cloned())
    }

    const AWS: [(&str, &str); 4] = [
        ("SYNCTRAIL_TABLE", "t"),
        ("SYNCTRAIL_BUCKET", "b"),
        ("SYNCTRAIL_QUEUE_URL", "http://127.0.0.1:5000/q"),
        ("SYNCTRAIL_DLQ_URL", "http://127.0.0.1:5000/d"),
    ];

    #[test]
    fn a_table_selects_the_aws_backend_and_every_resource_is_required() {
        let aws = config(&AWS).expect("valid");
        assert!(matches!(&aws.backend, BackendConfig::Aws(c) if c.table == "t" && c.dlq.ends_with("/d")));
        let error = config(&AWS[..3]).expect_err("no dead-letter queue");
        assert!(error.to_string().starts_with("SYNCTRAIL_DLQ_URL is not set"), "{error}");
    }

    #[test]
    fn on_lambda_a_missing_backend_is_an_error_naming_the_variables() {
        let error = config(&[("AWS_LAMBDA_FUNCTION_NAME", "synctrail-processor")]).expect_err("no backend");
        let text = error.to_string();
        for name in ["SYNCTRAIL_TABLE", "SYNCTRAIL_QUEUE_URL", "SYNCTRAIL_BACKEND=embedded", "SYNCTRAIL_HOME"] {
            assert!(text.contains(name), "{text}");
        }
        let chosen =
            config(&[("AWS_LAMBDA_FUNCTION_NAME", "p"), ("SYNCTRAIL_BACKEND", "embedded")]).expect("chosen explicitly");
        assert_eq!(chosen.backend, BackendConfig::Embedded(EmbeddedConfig::at(LAMBDA_HOME)));
        let on_lambda = [("AWS_LAMBDA_FUNCTION_NAME", "p")].into_iter().chain(AWS).collect::<Vec<_>>();
        assert!(matches!(config(&on_lambda).expect("AWS").backend, BackendConfig::Aws(_)));
    }

    #[test]
    fn off_lambda_the_embedded_backend_is_the_default() {
        let local = config(&[]).expect("valid");
        assert_eq!(local.backend, BackendConfig::Embedded(EmbeddedConfig::at(DEFAULT_HOME)));
        assert!(local.destination.is_mirror());
        assert!(local.dependencies.is_empty());
        assert_eq!((local.metrics_namespace.as_str(), local.sweep_limit), ("synctrail", DEFAULT_SWEEP_LIMIT));
    }

    #[cfg(feature = "http")]
    #[test]
    fn the_http_destination_needs_its_url_and_refuses_a_short_secret_naming_the_variable() {
        let missing = config(&[("SYNCTRAIL_DESTINATION", "http")]).expect_err("no URL");
        assert!(missing.to_string().contains("SYNCTRAIL_DESTINATION_URL"), "{missing}");
        let short = config(&[
            ("SYNCTRAIL_DESTINATION", "http"),
            ("SYNCTRAIL_DESTINATION_URL", "http://127.0.0.1:9/changes"),
            ("SYNCTRAIL_DESTINATION_SECRET", "short"),
        ])
        .expect_err("a 5-byte secret");
        assert!(short.to_string().contains("SYNCTRAIL_DESTINATION_SECRET"), "{short}");
        assert!(!short.to_string().contains("short\""), "the secret itself is never shown: {short}");
        let http = config(&[("SYNCTRAIL_DESTINATION", "http"), ("SYNCTRAIL_DESTINATION_URL", "http://127.0.0.1:9/c")]);
        assert!(matches!(http.expect("valid").destination, DestinationConfig::Http(_)));
    }

    #[cfg(feature = "http")]
    #[test]
    fn an_outbound_connector_is_read_into_the_config_and_its_token_is_required() {
        assert!(config(&[]).expect("valid").outbound.is_none());
        let missing = config(&[("SYNCTRAIL_OUTBOUND", "github")]).expect_err("no token");
        assert!(missing.to_string().contains("SYNCTRAIL_GITHUB_TOKEN"), "{missing}");
        let github = config(&[("SYNCTRAIL_OUTBOUND", "github"), ("SYNCTRAIL_GITHUB_TOKEN", "ghp_x")]).expect("valid");
        assert!(matches!(github.outbound, Some(crate::destination::connectors::OutboundConfig::GitHub(_))));
    }

    #[test]
    fn bad_values_are_refused_naming_their_variable() {
        for (name, value) in [
            ("SYNCTRAIL_BACKEND", "gcp"),
            ("SYNCTRAIL_DESTINATION", "ftp"),
            ("SYNCTRAIL_OUTBOUND", "gitlab"),
            ("SYNCTRAIL_SWEEP_LIMIT", "0"),
            ("SYNCTRAIL_RECORD_CONCURRENCY", "none"),
            ("SYNCTRAIL_REDRIVE_QUEUES", "processor-b"),
            ("SYNCTRAIL_REDRIVE_QUEUES", "processor-b=http://127.0.0.1:1/q"),
            ("SYNCTRAIL_DEPENDENCIES", "level.product_id"),
            ("SYNCTRAIL_DELTA_FIELDS", "stock=quantity"),
            ("SYNCTRAIL_MAX_ATTEMPTS", "many"),
        ] {
            let error = config(&[(name, value)]).expect_err(name);
            assert!(error.to_string().contains(name), "{name}: {error}");
        }
    }
}
