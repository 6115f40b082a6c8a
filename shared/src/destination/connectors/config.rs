//! The outbound connector's typed configuration (`SYNCTRAIL_OUTBOUND` and the variables of the chosen connector),
//! read once; errors name the variable and what it should hold. Tokens never show in `Debug` output or errors.

use crate::destination::http::config::{millis, parse_url, requests, shown_url};
use crate::destination::http::transport::TransportSettings;
use crate::destination::http::HttpConfigError;
use http::Uri;
use std::time::Duration;

/// `github` or `shopify`: which connector writes `outbound` events; unset: none (every event goes to the
/// destination).
pub const OUTBOUND_VARIABLE: &str = "SYNCTRAIL_OUTBOUND";
/// The GitHub token (a fine-grained or classic personal access token with issues: write).
pub const GITHUB_TOKEN_VARIABLE: &str = "SYNCTRAIL_GITHUB_TOKEN";
/// The GitHub REST API's base URL: default `https://api.github.com` (GitHub Enterprise Server:
/// `https://<host>/api/v3`).
pub const GITHUB_API_URL_VARIABLE: &str = "SYNCTRAIL_GITHUB_API_URL";
/// The shop: `johns-apparel` or `johns-apparel.myshopify.com` (also the tenant of its events).
pub const SHOPIFY_SHOP_VARIABLE: &str = "SYNCTRAIL_SHOPIFY_SHOP";
/// The Admin API access token (`shpat_…`) with `write_products`.
pub const SHOPIFY_TOKEN_VARIABLE: &str = "SYNCTRAIL_SHOPIFY_TOKEN";
/// The Admin API's base URL: default `https://<shop>.myshopify.com`.
pub const SHOPIFY_API_URL_VARIABLE: &str = "SYNCTRAIL_SHOPIFY_API_URL";
/// The Admin API version (`YYYY-MM`): default [`DEFAULT_SHOPIFY_API_VERSION`].
pub const SHOPIFY_API_VERSION_VARIABLE: &str = "SYNCTRAIL_SHOPIFY_API_VERSION";
/// How long one change may take in all (every request it needs), in milliseconds: default 10000.
pub const TIMEOUT_VARIABLE: &str = "SYNCTRAIL_OUTBOUND_TIMEOUT_MS";
/// How long opening a connection may take, in milliseconds: default 2000.
pub const CONNECT_TIMEOUT_VARIABLE: &str = "SYNCTRAIL_OUTBOUND_CONNECT_TIMEOUT_MS";
/// Requests in flight at most per invocation: default [`DEFAULT_CONCURRENCY`].
pub const CONCURRENCY_VARIABLE: &str = "SYNCTRAIL_OUTBOUND_CONCURRENCY";

/// GitHub's public API.
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
/// The Admin API version used when none is configured (the version the webhook fixtures are documented in).
pub const DEFAULT_SHOPIFY_API_VERSION: &str = "2026-01";
/// Requests in flight at most, by default: GitHub refuses more than 100 at once and Shopify's bucket holds 40, and
/// every Lambda invocation has its own connector.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// A token sent in a header. Its value never shows in `Debug` output, errors or logs.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// A token from its text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The text, for the request header only.
    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

/// Which connector writes outbound events, and how it reaches its API.
#[derive(Debug, Clone)]
pub enum OutboundConfig {
    /// Issues and issue comments through GitHub's REST API.
    GitHub(GitHubConfig),
    /// Products through Shopify's REST Admin API.
    Shopify(ShopifyConfig),
}

/// The GitHub connector's settings.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// The REST API's base URL.
    pub api_url: Uri,
    /// Sent as `Authorization: Bearer …`.
    pub token: Token,
    /// Timeouts and requests in flight.
    pub limits: Limits,
}

/// The Shopify connector's settings.
#[derive(Debug, Clone)]
pub struct ShopifyConfig {
    /// The shop's name without `.myshopify.com`: the tenant whose events it writes.
    pub shop: String,
    /// The Admin API's base URL.
    pub api_url: Uri,
    /// The Admin API version, `YYYY-MM`.
    pub api_version: String,
    /// Sent as `X-Shopify-Access-Token`.
    pub token: Token,
    /// Timeouts and requests in flight.
    pub limits: Limits,
}

/// How long a connector waits and how many requests it keeps in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// How long one change may take in all; never past the invocation's deadline.
    pub timeout: Duration,
    /// Requests in flight at most.
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

impl Limits {
    /// The transport settings for an API at `url`.
    pub(super) fn transport(&self, url: &Uri) -> TransportSettings {
        TransportSettings {
            https: url.scheme_str() == Some("https"),
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
            concurrency: self.concurrency,
        }
    }
}

impl OutboundConfig {
    /// The connector [`OUTBOUND_VARIABLE`] chooses, configured by its variables through `lookup` (blank values
    /// count as unset); `None` when no connector is chosen.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, HttpConfigError> {
        let lookup = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let Some(choice) = lookup(OUTBOUND_VARIABLE) else {
            return Ok(None);
        };
        let limits = Limits::from_lookup(&lookup)?;
        match choice.trim() {
            "github" => Ok(Some(Self::GitHub(GitHubConfig {
                api_url: api_url(&lookup, GITHUB_API_URL_VARIABLE, DEFAULT_GITHUB_API_URL)?,
                token: token(
                    &lookup,
                    GITHUB_TOKEN_VARIABLE,
                    "a GitHub token that may write issues (ghp_… or github_pat_…)",
                )?,
                limits,
            }))),
            "shopify" => {
                let shop = shop(&lookup)?;
                let default_url = format!("https://{shop}.myshopify.com");
                Ok(Some(Self::Shopify(ShopifyConfig {
                    api_url: api_url(&lookup, SHOPIFY_API_URL_VARIABLE, &default_url)?,
                    api_version: api_version(&lookup)?,
                    token: token(
                        &lookup,
                        SHOPIFY_TOKEN_VARIABLE,
                        "an Admin API access token with write_products (shpat_…)",
                    )?,
                    shop,
                    limits,
                })))
            }
            other => Err(HttpConfigError::Invalid {
                variable: OUTBOUND_VARIABLE,
                value: other.to_owned(),
                expected: "github or shopify (unset: outbound events go to the destination)",
            }),
        }
    }
}

impl Limits {
    fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, HttpConfigError> {
        let mut limits = Self::default();
        if let Some(timeout) = millis(lookup, CONNECT_TIMEOUT_VARIABLE)? {
            limits.connect_timeout = timeout;
        }
        if let Some(timeout) = millis(lookup, TIMEOUT_VARIABLE)? {
            limits.timeout = timeout;
        }
        if let Some(n) = requests(lookup, CONCURRENCY_VARIABLE)? {
            limits.concurrency = n;
        }
        Ok(limits)
    }
}

/// The API's base URL from `variable`, or `default`; without a trailing slash.
fn api_url(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: &str,
) -> Result<Uri, HttpConfigError> {
    let text = lookup(variable).unwrap_or_else(|| default.to_owned());
    let url = parse_url(variable, text.trim().trim_end_matches('/'))?;
    if url.query().is_some() {
        return Err(HttpConfigError::Invalid {
            variable,
            value: shown_url(&text),
            expected: "a base URL without a query, e.g. https://api.github.com",
        });
    }
    Ok(url)
}

fn token(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    expected: &'static str,
) -> Result<Token, HttpConfigError> {
    let text = lookup(variable).ok_or(HttpConfigError::Missing { variable, expected })?;
    let text = text.trim();
    if text.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(HttpConfigError::Invalid {
            variable,
            value: format!("<hidden, {} bytes>", text.len()),
            expected: "a token of visible ASCII characters, without spaces",
        });
    }
    Ok(Token::new(text))
}

/// The shop's name: `johns-apparel`, also given as `johns-apparel.myshopify.com`.
fn shop(lookup: &impl Fn(&str) -> Option<String>) -> Result<String, HttpConfigError> {
    let expected = "the shop's name, e.g. johns-apparel or johns-apparel.myshopify.com";
    let text =
        lookup(SHOPIFY_SHOP_VARIABLE).ok_or(HttpConfigError::Missing { variable: SHOPIFY_SHOP_VARIABLE, expected })?;
    let lower = text.trim().to_ascii_lowercase();
    let shop = lower.strip_suffix(".myshopify.com").unwrap_or(&lower);
    match crate::model::check_name("shop", shop) {
        Ok(()) => Ok(shop.to_owned()),
        Err(_) => Err(HttpConfigError::Invalid { variable: SHOPIFY_SHOP_VARIABLE, value: text, expected }),
    }
}

fn api_version(lookup: &impl Fn(&str) -> Option<String>) -> Result<String, HttpConfigError> {
    let Some(text) = lookup(SHOPIFY_API_VERSION_VARIABLE) else {
        return Ok(DEFAULT_SHOPIFY_API_VERSION.to_owned());
    };
    let version = text.trim();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    match version.split_once('-') {
        Some((year, month)) if digits(year, 4) && digits(month, 2) => Ok(version.to_owned()),
        _ => Err(HttpConfigError::Invalid {
            variable: SHOPIFY_API_VERSION_VARIABLE,
            value: text,
            expected: "an API version like 2026-01",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Option<OutboundConfig>, HttpConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        OutboundConfig::from_lookup(move |name| map.get(name).cloned())
    }

    #[test]
    fn no_connector_unless_one_is_chosen() {
        assert!(config(&[]).expect("valid").is_none());
        assert!(config(&[(OUTBOUND_VARIABLE, " ")]).expect("blank is unset").is_none());
    }

    #[test]
    fn github_needs_a_token_and_defaults_to_the_public_api() {
        let missing = config(&[(OUTBOUND_VARIABLE, "github")]).expect_err("no token");
        assert!(missing.to_string().starts_with("SYNCTRAIL_GITHUB_TOKEN is not set"), "{missing}");
        let Some(OutboundConfig::GitHub(github)) =
            config(&[(OUTBOUND_VARIABLE, "github"), (GITHUB_TOKEN_VARIABLE, "ghp_abc")]).expect("valid")
        else {
            panic!("a GitHub connector")
        };
        assert_eq!(github.api_url.to_string(), "https://api.github.com/");
        assert_eq!(github.limits, Limits::default());
    }

    #[test]
    fn shopify_needs_its_shop_and_token_and_takes_the_shop_domain_too() {
        let missing = config(&[(OUTBOUND_VARIABLE, "shopify"), (SHOPIFY_TOKEN_VARIABLE, "shpat_1")]).expect_err("shop");
        assert!(missing.to_string().starts_with("SYNCTRAIL_SHOPIFY_SHOP is not set"), "{missing}");
        let Some(OutboundConfig::Shopify(shopify)) = config(&[
            (OUTBOUND_VARIABLE, "shopify"),
            (SHOPIFY_SHOP_VARIABLE, "Johns-Apparel.myshopify.com"),
            (SHOPIFY_TOKEN_VARIABLE, "shpat_1"),
            (CONCURRENCY_VARIABLE, "2"),
        ])
        .expect("valid") else {
            panic!("a Shopify connector")
        };
        assert_eq!(shopify.shop, "johns-apparel");
        assert_eq!(shopify.api_url.to_string(), "https://johns-apparel.myshopify.com/");
        assert_eq!((shopify.api_version.as_str(), shopify.limits.concurrency), (DEFAULT_SHOPIFY_API_VERSION, 2));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (variable, value) in [
            (OUTBOUND_VARIABLE, "gitlab"),
            (GITHUB_API_URL_VARIABLE, "ftp://example.com"),
            (GITHUB_API_URL_VARIABLE, "https://example.com/api?x=1"),
            (TIMEOUT_VARIABLE, "0"),
            (CONCURRENCY_VARIABLE, "many"),
        ] {
            let error = config(&[(OUTBOUND_VARIABLE, "github"), (GITHUB_TOKEN_VARIABLE, "t"), (variable, value)])
                .expect_err(variable);
            assert!(error.to_string().starts_with(&format!("{variable}=")), "{error}");
        }
        let version = [(OUTBOUND_VARIABLE, "shopify"), (SHOPIFY_SHOP_VARIABLE, "s"), (SHOPIFY_TOKEN_VARIABLE, "t")];
        let error = config(&[version.as_slice(), &[(SHOPIFY_API_VERSION_VARIABLE, "latest")]].concat()).expect_err("v");
        assert!(error.to_string().starts_with("SYNCTRAIL_SHOPIFY_API_VERSION="), "{error}");
    }

    #[test]
    fn a_token_never_shows_in_debug_output_or_errors() {
        let secret = "ghp_super_secret_value";
        let chosen = config(&[(OUTBOUND_VARIABLE, "github"), (GITHUB_TOKEN_VARIABLE, secret)]).expect("valid");
        let printed = format!("{chosen:?}");
        assert!(!printed.contains(secret) && printed.contains("<hidden>"), "{printed}");
        let spaced = "ghp_with a space";
        let error = config(&[(OUTBOUND_VARIABLE, "github"), (GITHUB_TOKEN_VARIABLE, spaced)]).expect_err("a space");
        assert!(!error.to_string().contains("with a space"), "{error}");
    }
}
