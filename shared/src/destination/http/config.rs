//! The HTTP destination's typed configuration, read once from environment-like variables.

use http::Uri;
use std::time::Duration;

use super::signature::Secret;

/// The receiver's URL (`http://` or `https://`): required.
pub const URL_VARIABLE: &str = "SYNCTRAIL_DESTINATION_URL";
/// How long opening the TCP connection may take, in milliseconds: default 2000 (the TLS handshake counts against the
/// whole request's timeout).
pub const CONNECT_TIMEOUT_VARIABLE: &str = "SYNCTRAIL_DESTINATION_CONNECT_TIMEOUT_MS";
/// How long one request may take in all (connecting, sending, the answer), in milliseconds: default 10000.
pub const TIMEOUT_VARIABLE: &str = "SYNCTRAIL_DESTINATION_TIMEOUT_MS";
/// How many requests one invocation (one destination) keeps in flight at most: default 16.
pub const CONCURRENCY_VARIABLE: &str = "SYNCTRAIL_DESTINATION_CONCURRENCY";
/// The shared secret requests are signed with (`Synctrail-Signature`); unset: requests are not signed.
pub const SECRET_VARIABLE: &str = "SYNCTRAIL_DESTINATION_SECRET";

/// The default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The default overall timeout of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default limit of requests in flight.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// The most requests in flight a configuration may ask for.
pub const MAX_CONCURRENCY: usize = 1024;
/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// Where and how the HTTP destination delivers changes.
#[derive(Debug, Clone)]
pub struct HttpDestinationConfig {
    /// The receiver's endpoint; every change is a `POST` to it.
    pub url: Uri,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// How long one request may take in all; never past the invocation's deadline.
    pub timeout: Duration,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Signs every request when set.
    pub secret: Option<Secret>,
}

/// A configuration that can't be used: names the variable and what it should be.
#[derive(Debug, thiserror::Error)]
pub enum HttpConfigError {
    /// A required variable is unset or empty.
    #[error("{variable} is not set: {expected}")]
    Missing {
        /// The variable.
        variable: &'static str,
        /// What it should hold.
        expected: &'static str,
    },
    /// A variable's value can't be used.
    #[error("{variable}={value:?} is invalid: expected {expected}")]
    Invalid {
        /// The variable.
        variable: &'static str,
        /// Its value (a secret's is never shown, only its length).
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// An `https://` URL, but the platform's TLS root certificates could not be loaded.
    #[error(
        "{variable} is https, but no TLS root certificates could be loaded from the platform ({source}); \
         install the CA certificates or point SSL_CERT_FILE at a PEM bundle"
    )]
    TlsRoots {
        /// The URL's variable.
        variable: &'static str,
        /// What loading them said.
        source: std::io::Error,
    },
}

impl HttpDestinationConfig {
    /// `url` with the default timeouts and concurrency, unsigned.
    pub fn new(url: &str) -> Result<Self, HttpConfigError> {
        Ok(Self {
            url: parse_url(URL_VARIABLE, url)?,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            secret: None,
        })
    }

    /// Reads [`URL_VARIABLE`], [`CONNECT_TIMEOUT_VARIABLE`], [`TIMEOUT_VARIABLE`], [`CONCURRENCY_VARIABLE`] and
    /// [`SECRET_VARIABLE`] through `lookup` (the process environment, or a map in tests). Unset or empty optional
    /// variables take their defaults; a secret variable that is set must hold a usable secret.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, HttpConfigError> {
        let url = lookup(URL_VARIABLE).filter(|v| !v.trim().is_empty()).ok_or(HttpConfigError::Missing {
            variable: URL_VARIABLE,
            expected: "the receiver's http:// or https:// URL, e.g. https://erp.example.com/synctrail",
        })?;
        let mut config = Self::new(&url)?;
        if let Some(timeout) = millis(&lookup, CONNECT_TIMEOUT_VARIABLE)? {
            config.connect_timeout = timeout;
        }
        if let Some(timeout) = millis(&lookup, TIMEOUT_VARIABLE)? {
            config.timeout = timeout;
        }
        if let Some(n) = requests(&lookup, CONCURRENCY_VARIABLE)? {
            config.concurrency = n;
        }
        if let Some(value) = lookup(SECRET_VARIABLE) {
            config.secret = Some(secret(value)?);
        }
        Ok(config)
    }

    /// Signs requests with `secret`.
    pub fn with_secret(mut self, secret: Secret) -> Self {
        self.secret = Some(secret);
        self
    }
}

/// A timeout in milliseconds (1 to 600000) in `variable`, when set.
pub(crate) fn millis(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
) -> Result<Option<Duration>, HttpConfigError> {
    let expected = "a whole number of milliseconds from 1 to 600000";
    Ok(whole_number(lookup, variable, 1, 600_000, expected)?.map(Duration::from_millis))
}

/// A number of requests in flight (1 to [`MAX_CONCURRENCY`]) in `variable`, when set.
pub(crate) fn requests(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
) -> Result<Option<usize>, HttpConfigError> {
    let expected = "a whole number of requests from 1 to 1024";
    Ok(whole_number(lookup, variable, 1, MAX_CONCURRENCY as u64, expected)?.map(|n| n as usize))
}

/// A whole number from `min` to `max` in `variable`, when set (blank counts as unset).
fn whole_number(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<Option<u64>, HttpConfigError> {
    let Some(text) = lookup(variable).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    match text.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(HttpConfigError::Invalid { variable, value: text, expected }),
    }
}

/// An absolute `http://` or `https://` URL with a host, no credentials and no fragment, from `variable`.
pub(crate) fn parse_url(variable: &'static str, text: &str) -> Result<Uri, HttpConfigError> {
    let invalid = |expected| HttpConfigError::Invalid { variable, value: shown_url(text), expected };
    let url: Uri = text.trim().parse().map_err(|_| invalid("an absolute http:// or https:// URL"))?;
    if !matches!(url.scheme_str(), Some("http" | "https")) {
        return Err(invalid("an absolute http:// or https:// URL"));
    }
    match url.authority() {
        None => Err(invalid("a URL with a host, e.g. https://erp.example.com/synctrail")),
        Some(authority) if authority.host().is_empty() => {
            Err(invalid("a URL with a host, e.g. https://erp.example.com/synctrail"))
        }
        Some(authority) if authority.as_str().contains('@') => {
            Err(invalid("a URL without credentials (secrets and tokens have variables of their own)"))
        }
        Some(_) => Ok(url),
    }
}

/// `text` as an error may show it: credentials before an `@` and a query (`?access_token=…`) are hidden, as a URL
/// refused for holding them would otherwise print them.
pub(crate) fn shown_url(text: &str) -> String {
    let text = text.trim();
    let (url, query) = match text.split_once('?') {
        Some((url, _)) => (url, "?<hidden>"),
        None => (text, ""),
    };
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(scheme, rest)| (scheme, rest));
    let (authority, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
    let host = authority.rsplit_once('@').map_or_else(|| authority.to_owned(), |(_, host)| format!("<hidden>@{host}"));
    let scheme = if scheme.is_empty() { String::new() } else { format!("{scheme}://") };
    format!("{scheme}{host}{path}{query}")
}

fn secret(value: String) -> Result<Secret, HttpConfigError> {
    if value.len() < MIN_SECRET_BYTES {
        return Err(HttpConfigError::Invalid {
            variable: SECRET_VARIABLE,
            value: format!("<hidden, {} bytes>", value.len()),
            expected: "a secret of at least 16 bytes (32 random bytes, hex-encoded, recommended); unset it to send \
                       unsigned requests",
        });
    }
    Ok(Secret::new(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    fn error_of(vars: &[(&str, &str)]) -> String {
        HttpDestinationConfig::from_lookup(lookup(vars)).map(|_| ()).expect_err("invalid").to_string()
    }

    #[test]
    fn a_refused_url_is_shown_without_its_credentials_or_query() {
        let said = error_of(&[(URL_VARIABLE, "https://x-access-token:ghp_secret@erp.example.com/hook")]);
        assert!(!said.contains("ghp_secret") && said.contains("https://<hidden>@erp.example.com/hook"), "{said}");
        assert_eq!(shown_url("ftp://u:p@host/a?token=t"), "ftp://<hidden>@host/a?<hidden>");
        assert_eq!(shown_url("u:p@host"), "<hidden>@host");
        assert_eq!(shown_url(" https://erp.example.com/synctrail "), "https://erp.example.com/synctrail");
    }

    #[test]
    fn only_the_url_is_required_and_the_rest_has_defaults() {
        let config =
            HttpDestinationConfig::from_lookup(lookup(&[(URL_VARIABLE, "https://erp.example.com/in")])).expect("valid");
        assert_eq!(config.url.to_string(), "https://erp.example.com/in");
        assert_eq!((config.connect_timeout, config.timeout), (DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT));
        assert_eq!(config.concurrency, DEFAULT_CONCURRENCY);
        assert!(config.secret.is_none());
    }

    #[test]
    fn every_variable_is_read() {
        let config = HttpDestinationConfig::from_lookup(lookup(&[
            (URL_VARIABLE, "http://127.0.0.1:8080/hook"),
            (CONNECT_TIMEOUT_VARIABLE, "250"),
            (TIMEOUT_VARIABLE, "3000"),
            (CONCURRENCY_VARIABLE, "4"),
            (SECRET_VARIABLE, "0123456789abcdef0123456789abcdef"),
        ]))
        .expect("valid");
        assert_eq!(config.connect_timeout, Duration::from_millis(250));
        assert_eq!(config.timeout, Duration::from_secs(3));
        assert_eq!(config.concurrency, 4);
        assert!(config.secret.is_some());
    }

    #[test]
    fn a_missing_or_malformed_url_names_its_variable() {
        assert!(error_of(&[]).starts_with("SYNCTRAIL_DESTINATION_URL is not set"));
        for url in ["not a url", "ftp://example.com/x", "/relative/path", "https://user:pw@example.com/", "http://"] {
            let error = error_of(&[(URL_VARIABLE, url)]);
            assert!(error.starts_with("SYNCTRAIL_DESTINATION_URL="), "{url}: {error}");
        }
    }

    #[test]
    fn a_bad_number_names_its_variable() {
        for (variable, value) in [
            (CONNECT_TIMEOUT_VARIABLE, "2s"),
            (TIMEOUT_VARIABLE, "0"),
            (CONCURRENCY_VARIABLE, "-1"),
            (CONCURRENCY_VARIABLE, "5000"),
        ] {
            let error = error_of(&[(URL_VARIABLE, "https://example.com/"), (variable, value)]);
            assert!(error.starts_with(&format!("{variable}=")), "{error}");
        }
    }

    #[test]
    fn a_named_but_unusable_secret_fails_without_showing_it() {
        for value in ["", "short-secret"] {
            let error = error_of(&[(URL_VARIABLE, "https://example.com/"), (SECRET_VARIABLE, value)]);
            assert!(error.starts_with("SYNCTRAIL_DESTINATION_SECRET="), "{error}");
            assert!(value.is_empty() || !error.contains(value), "the secret leaked: {error}");
        }
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let config = HttpDestinationConfig::from_lookup(lookup(&[
            (URL_VARIABLE, "https://example.com/"),
            (SECRET_VARIABLE, "super-secret-value-123"),
        ]))
        .expect("valid");
        let printed = format!("{config:?}");
        assert!(!printed.contains("super-secret-value-123"), "{printed}");
        assert!(printed.contains("hidden"), "{printed}");
    }
}
