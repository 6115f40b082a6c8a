//! Which webhook sources exist, their secrets and mappings, and the size limits: a typed value built in code or
//! from `SYNCTRAIL_*` variables (the environment locally and in tests; on AWS the same names loaded from SSM or
//! Secrets Manager once per cold start).

use super::generic::{EntityTypeAt, GenericMapping};
use super::signature::{Encoding, Secret, SignatureScheme};
use crate::model::check_name;
use crate::settings::Settings;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `SYNCTRAIL_WEBHOOK_SECRET_<SOURCE>`: a source's secret; its presence is what defines the source.
pub const SECRET_PREFIX: &str = "SYNCTRAIL_WEBHOOK_SECRET_";
/// `SYNCTRAIL_WEBHOOK_SOURCE_<SOURCE>`: the JSON mapping of a source other than `github` and `shopify`.
pub const MAPPING_PREFIX: &str = "SYNCTRAIL_WEBHOOK_SOURCE_";
/// The largest webhook body accepted, in bytes; larger ones are answered 413 unread.
pub const MAX_BODY_VARIABLE: &str = "SYNCTRAIL_WEBHOOK_MAX_BODY_BYTES";
/// The engine's payload limit (the same variable [`Settings::from_vars`](crate::Settings::from_vars) reads): a mapped payload over it is
/// unmappable.
pub const MAX_PAYLOAD_VARIABLE: &str = "SYNCTRAIL_MAX_PAYLOAD_BYTES";

/// The webhook ingress's configuration.
#[derive(Debug, Clone)]
pub struct IngressConfig {
    /// The sources by route name (`POST /webhooks/{source}`).
    pub sources: BTreeMap<String, SourceConfig>,
    /// The largest body accepted, in bytes (default 1 MiB).
    pub max_body_bytes: usize,
    /// The largest mapped payload, in bytes of its JSON text (default: the engine's default).
    pub max_payload_bytes: usize,
}

/// One source: its secret and how its deliveries map to envelopes.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The HMAC key; never printed.
    pub secret: Secret,
    /// The mapping.
    pub provider: Provider,
}

/// How a source's deliveries are signed and mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// GitHub's headers and event types (docs/webhooks.md).
    GitHub,
    /// Shopify's headers and topics.
    Shopify,
    /// Configured: signature header and JSON pointers.
    Generic(GenericMapping),
}

impl Provider {
    /// Where this provider's signature is and how it is written.
    pub fn signature(&self) -> SignatureScheme {
        match self {
            Self::GitHub => SignatureScheme::github(),
            Self::Shopify => SignatureScheme::shopify(),
            Self::Generic(mapping) => mapping.signature.clone(),
        }
    }
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            sources: BTreeMap::new(),
            max_body_bytes: 1024 * 1024,
            max_payload_bytes: Settings::default().max_payload_bytes,
        }
    }
}

impl IngressConfig {
    /// This configuration with source `name` (`[a-z0-9_-]`, as in the route) added or replaced.
    pub fn with_source(mut self, name: &str, secret: Secret, provider: Provider) -> Self {
        self.sources.insert(name.to_owned(), SourceConfig { secret, provider });
        self
    }

    /// The configuration the process environment describes; see [`IngressConfig::from_vars`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(synctrail_vars()?)
    }

    /// The configuration these variables describe (other names are ignored):
    /// - `SYNCTRAIL_WEBHOOK_SECRET_<SOURCE>`: one per source; the source's route name is `<SOURCE>` lower-cased.
    ///   `github` and `shopify` use their built-in mappings;
    /// - `SYNCTRAIL_WEBHOOK_SOURCE_<SOURCE>`: the JSON mapping of any other source (docs/webhooks.md);
    /// - `SYNCTRAIL_WEBHOOK_MAX_BODY_BYTES` and `SYNCTRAIL_MAX_PAYLOAD_BYTES`: the limits.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: BTreeMap<String, String> = vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let mut config = Self::default();
        if let Some(value) = vars.get(MAX_BODY_VARIABLE) {
            config.max_body_bytes = whole_number(MAX_BODY_VARIABLE, value)?;
        }
        if let Some(value) = vars.get(MAX_PAYLOAD_VARIABLE) {
            config.max_payload_bytes = whole_number(MAX_PAYLOAD_VARIABLE, value)?;
        }
        for (variable, value) in &vars {
            if let Some(suffix) = variable.strip_prefix(SECRET_PREFIX) {
                let source = source_name(variable, suffix)?;
                let secret = Secret::new(value.as_bytes())
                    .ok_or_else(|| ConfigError::EmptySecret { variable: variable.clone() })?;
                let mapping_variable = format!("{MAPPING_PREFIX}{suffix}");
                let provider = match (source.as_str(), vars.get(&mapping_variable)) {
                    ("github", None) => Provider::GitHub,
                    ("shopify", None) => Provider::Shopify,
                    ("github" | "shopify", Some(_)) => {
                        return Err(ConfigError::BuiltInMapping { variable: mapping_variable })
                    }
                    (_, Some(json)) => Provider::Generic(generic_mapping(&mapping_variable, json)?),
                    (_, None) => {
                        return Err(ConfigError::MissingMapping { variable: variable.clone(), mapping_variable })
                    }
                };
                config.sources.insert(source, SourceConfig { secret, provider });
            } else if let Some(suffix) = variable.strip_prefix(MAPPING_PREFIX) {
                let secret_variable = format!("{SECRET_PREFIX}{suffix}");
                if !vars.contains_key(&secret_variable) {
                    return Err(ConfigError::MissingSecret { variable: variable.clone(), secret_variable });
                }
            }
        }
        Ok(config)
    }
}

/// The process environment's `SYNCTRAIL_*` variables, as (name, value) pairs for [`IngressConfig::from_vars`]
/// (after [`crate::secrets::resolve_references`] on AWS).
pub fn synctrail_vars() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with("SYNCTRAIL_")) else { continue };
        let value = value.into_string().map_err(|_| ConfigError::NotUnicode { variable: name.to_owned() })?;
        vars.push((name.to_owned(), value));
    }
    Ok(vars)
}

/// `<SOURCE>` lower-cased, checked against the source name rule.
fn source_name(variable: &str, suffix: &str) -> Result<String, ConfigError> {
    let name = suffix.to_ascii_lowercase();
    check_name("source", &name).map_err(|_| ConfigError::InvalidSourceName { variable: variable.to_owned() })?;
    Ok(name)
}

fn whole_number(variable: &'static str, value: &str) -> Result<usize, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::NotANumber { variable, value: value.to_owned() })
}

/// The JSON a `SYNCTRAIL_WEBHOOK_SOURCE_<SOURCE>` variable holds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericSpec {
    signature_header: String,
    encoding: Encoding,
    #[serde(default)]
    prefix: String,
    entity_type: String,
    external_id: String,
    updated_at: String,
    #[serde(default)]
    event_id_header: Option<String>,
}

fn generic_mapping(variable: &str, json: &str) -> Result<GenericMapping, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidMapping { variable: variable.to_owned(), reason };
    let spec: GenericSpec = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
    if spec.signature_header.trim().is_empty() {
        return Err(invalid("signature_header is empty".into()));
    }
    for (field, pointer) in [("external_id", &spec.external_id), ("updated_at", &spec.updated_at)] {
        if !pointer.starts_with('/') {
            return Err(invalid(format!("{field} = {pointer:?} is not a JSON pointer such as \"/data/id\"")));
        }
    }
    let entity_type = if spec.entity_type.starts_with('/') {
        EntityTypeAt::Pointer(spec.entity_type)
    } else {
        check_name("entity_type", &spec.entity_type).map_err(|e| invalid(format!("{e}, or a JSON pointer")))?;
        EntityTypeAt::Fixed(spec.entity_type)
    };
    Ok(GenericMapping {
        signature: SignatureScheme { header: spec.signature_header, encoding: spec.encoding, prefix: spec.prefix },
        entity_type,
        external_id: spec.external_id,
        updated_at: spec.updated_at,
        event_id_header: spec.event_id_header,
    })
}

/// A webhook configuration that can't be used; each names the variable to fix, never a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A `SYNCTRAIL_WEBHOOK_SECRET_<SOURCE>` whose `<SOURCE>` is not a valid source name.
    #[error("{variable}: the part after {SECRET_PREFIX} must be a source name of A-Z 0-9 _ (1 to 64 characters)")]
    InvalidSourceName {
        /// The variable.
        variable: String,
    },
    /// A secret variable that is set but empty.
    #[error("{variable} is empty: set it to the secret the source signs its webhooks with")]
    EmptySecret {
        /// The variable.
        variable: String,
    },
    /// A source other than `github` and `shopify` without its mapping.
    #[error("{variable} names a source with no built-in mapping: set {mapping_variable} to its JSON mapping (docs/webhooks.md)")]
    MissingMapping {
        /// The secret's variable.
        variable: String,
        /// The mapping's variable.
        mapping_variable: String,
    },
    /// A mapping for a source that has none of its own secret.
    #[error("{variable} is set but {secret_variable} is not: a source needs its secret")]
    MissingSecret {
        /// The mapping's variable.
        variable: String,
        /// The secret's variable.
        secret_variable: String,
    },
    /// A mapping given for `github` or `shopify`, whose mappings are built in.
    #[error("{variable}: github and shopify have built-in mappings; remove it, or name the source differently")]
    BuiltInMapping {
        /// The mapping's variable.
        variable: String,
    },
    /// A mapping that is not valid JSON of the documented shape.
    #[error("{variable} is not a valid webhook mapping: {reason} (docs/webhooks.md shows the format)")]
    InvalidMapping {
        /// The mapping's variable.
        variable: String,
        /// What is wrong.
        reason: String,
    },
    /// A limit that is not a whole number.
    #[error("{variable}={value:?} is invalid: expected a whole number of bytes")]
    NotANumber {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// A `SYNCTRAIL_*` variable whose value is not UTF-8.
    #[error("{variable} is not valid UTF-8")]
    NotUnicode {
        /// The variable.
        variable: String,
    },
}
