//! Secrets given by reference. On AWS a function's environment names a secret instead of holding it: for a
//! variable `<NAME>` whose name holds `SECRET` (`SYNCTRAIL_WEBHOOK_SECRET_GITHUB`, `SYNCTRAIL_DESTINATION_SECRET`)
//! or ends in `_TOKEN` (`SYNCTRAIL_GITHUB_TOKEN`),
//! `<NAME>_ARN` holds the ARN (or name) of a Secrets Manager secret, and [`resolve_references`] replaces it with
//! `<NAME>` = the secret's string, read once (at a cold start). Locally and in tests the variables hold the
//! secrets themselves and nothing is fetched.
//!
//! Secrets Manager only, not SSM Parameter Store: the SSM SDK crate is nine times the size of Secrets Manager's
//! and would add minutes to every build (docs/webhooks.md). A reference to an SSM parameter is refused by name.

#[cfg(feature = "aws")]
mod aws;

#[cfg(feature = "aws")]
pub use aws::{resolve_from_secrets_manager, SecretsManager};

use async_trait::async_trait;
use std::collections::BTreeSet;

/// The suffix of a variable that names a secret instead of holding it.
pub const REFERENCE_SUFFIX: &str = "_ARN";

/// Where referenced secrets are read.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The string value of the secret `reference` names (an ARN or a name).
    async fn secret_string(&self, reference: &str) -> Result<String, FetchError>;
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The secret holds binary data, not a string.
    #[error("the secret has no string value (it is binary)")]
    NotAString,
    /// The service refused or failed.
    #[error("{message}")]
    Service {
        /// What the service said.
        message: String,
        /// The error itself.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A secret reference that can't be resolved; each names the variable, never a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Both the secret and a reference to it are set.
    #[error("{variable} and {reference_variable} are both set: keep one (the secret itself, or its ARN)")]
    Both {
        /// The secret's variable.
        variable: String,
        /// The reference's variable.
        reference_variable: String,
    },
    /// The reference names an SSM parameter.
    #[error(
        "{reference_variable} names an SSM parameter ({reference}); secrets are read from Secrets Manager only: \
         store it there and give the secret's ARN (docs/webhooks.md)"
    )]
    Ssm {
        /// The reference's variable.
        reference_variable: String,
        /// Its value.
        reference: String,
    },
    /// The secret could not be read.
    #[error(
        "reading secret {reference} for {variable}: {source}; check the ARN, that the secret holds a string, and \
         that the function's role may secretsmanager:GetSecretValue it (and kms:Decrypt with its key)"
    )]
    Fetch {
        /// The variable it resolves.
        variable: String,
        /// The reference.
        reference: String,
        /// What went wrong.
        #[source]
        source: FetchError,
    },
    /// The secret's value is empty or only whitespace.
    #[error("secret {reference} for {variable} is empty or blank: such a key authenticates nothing")]
    Empty {
        /// The variable it resolves.
        variable: String,
        /// The reference.
        reference: String,
    },
}

/// The variable a reference variable resolves: `SYNCTRAIL_…SECRET…_ARN` → `SYNCTRAIL_…SECRET…`, and an API token's
/// `SYNCTRAIL_…_TOKEN_ARN` → `SYNCTRAIL_…_TOKEN` (the outbound connectors'); `None` for any other name.
pub fn referenced_variable(name: &str) -> Option<&str> {
    name.strip_suffix(REFERENCE_SUFFIX)
        .filter(|target| target.starts_with("SYNCTRAIL_") && (target.contains("SECRET") || target.ends_with("_TOKEN")))
}

/// Whether `vars` hold any reference to resolve (a blank one is no reference).
pub fn has_references(vars: &[(String, String)]) -> bool {
    vars.iter().any(|(name, value)| referenced_variable(name).is_some() && !value.trim().is_empty())
}

/// `vars` without their blank references: a blank reference means "not configured", like an unset variable (a
/// template passes an optional secret's ARN parameter through, empty by default).
pub fn without_blank_references(vars: Vec<(String, String)>) -> Vec<(String, String)> {
    vars.into_iter().filter(|(name, value)| referenced_variable(name).is_none() || !value.trim().is_empty()).collect()
}

/// `vars` with every reference replaced by the secret it names, read from `source` (once each). A blank
/// reference is dropped ([`without_blank_references`]). Other variables pass unchanged.
pub async fn resolve_references(
    vars: Vec<(String, String)>,
    source: &dyn SecretSource,
) -> Result<Vec<(String, String)>, SecretError> {
    let vars = without_blank_references(vars);
    let plain: BTreeSet<String> =
        vars.iter().filter(|(name, _)| referenced_variable(name).is_none()).map(|(name, _)| name.clone()).collect();
    let mut resolved = Vec::with_capacity(vars.len());
    for (name, value) in vars {
        let Some(variable) = referenced_variable(&name) else {
            resolved.push((name, value));
            continue;
        };
        let reference = value.trim();
        if plain.contains(variable) {
            return Err(SecretError::Both { variable: variable.to_owned(), reference_variable: name });
        }
        if reference.starts_with("ssm:") || reference.contains(":ssm:") {
            return Err(SecretError::Ssm { reference_variable: name, reference: reference.to_owned() });
        }
        let fetch =
            |source| SecretError::Fetch { variable: variable.to_owned(), reference: reference.to_owned(), source };
        let secret = source.secret_string(reference).await.map_err(fetch)?;
        if secret.trim().is_empty() {
            return Err(SecretError::Empty { variable: variable.to_owned(), reference: reference.to_owned() });
        }
        resolved.push((variable.to_owned(), secret));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// Secrets by reference, counting reads.
    #[derive(Default)]
    struct Fixed {
        secrets: BTreeMap<&'static str, &'static str>,
        reads: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl SecretSource for Fixed {
        async fn secret_string(&self, reference: &str) -> Result<String, FetchError> {
            self.reads.lock().expect("reads").push(reference.to_owned());
            self.secrets.get(reference).map(|s| (*s).to_owned()).ok_or_else(|| FetchError::Service {
                message: "ResourceNotFoundException".into(),
                source: "not found".into(),
            })
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    const GITHUB_ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:synctrail/github-AbCdEf";

    #[tokio::test]
    async fn a_secret_holding_only_whitespace_is_refused_as_empty() {
        for blank in ["", " \n"] {
            let source = Fixed { secrets: [(GITHUB_ARN, blank)].into(), ..Fixed::default() };
            let refused = resolve_references(vars(&[("SYNCTRAIL_DESTINATION_SECRET_ARN", GITHUB_ARN)]), &source).await;
            assert!(matches!(refused, Err(SecretError::Empty { .. })), "{blank:?}: {refused:?}");
        }
    }

    #[tokio::test]
    async fn a_reference_becomes_the_variable_it_names_and_other_variables_pass() {
        let source = Fixed { secrets: [(GITHUB_ARN, "gh-secret")].into(), ..Fixed::default() };
        let resolved = resolve_references(
            vars(&[
                ("SYNCTRAIL_WEBHOOK_SECRET_GITHUB_ARN", GITHUB_ARN),
                ("SYNCTRAIL_WEBHOOK_SECRET_SHOPIFY", "plain"),
                ("SYNCTRAIL_WEBHOOK_SECRET_ERP_ARN", " "),
                ("SYNCTRAIL_TABLE", "t"),
            ]),
            &source,
        )
        .await
        .expect("resolved");
        assert_eq!(
            resolved,
            vars(&[
                ("SYNCTRAIL_WEBHOOK_SECRET_GITHUB", "gh-secret"),
                ("SYNCTRAIL_WEBHOOK_SECRET_SHOPIFY", "plain"),
                ("SYNCTRAIL_TABLE", "t"),
            ]),
            "a blank reference is no source"
        );
        assert_eq!(*source.reads.lock().expect("reads"), [GITHUB_ARN], "read once, blank ones never");
    }

    #[test]
    fn only_synctrail_secret_variables_have_references() {
        assert_eq!(referenced_variable("SYNCTRAIL_DESTINATION_SECRET_ARN"), Some("SYNCTRAIL_DESTINATION_SECRET"));
        assert_eq!(referenced_variable("SYNCTRAIL_WEBHOOK_SECRET_GITHUB_ARN"), Some("SYNCTRAIL_WEBHOOK_SECRET_GITHUB"));
        assert_eq!(referenced_variable("SYNCTRAIL_GITHUB_TOKEN_ARN"), Some("SYNCTRAIL_GITHUB_TOKEN"));
        assert_eq!(referenced_variable("SYNCTRAIL_SHOPIFY_TOKEN_ARN"), Some("SYNCTRAIL_SHOPIFY_TOKEN"));
        for other in
            ["SYNCTRAIL_QUEUE_ARN", "AWS_SECRET_ARN", "SYNCTRAIL_WEBHOOK_SECRET_GITHUB", "SYNCTRAIL_TOKEN_X_ARN"]
        {
            assert_eq!(referenced_variable(other), None, "{other}");
        }
        assert!(!has_references(&vars(&[("SYNCTRAIL_WEBHOOK_SECRET_GITHUB_ARN", ""), ("SYNCTRAIL_TABLE", "t")])));
        assert!(has_references(&vars(&[("SYNCTRAIL_WEBHOOK_SECRET_GITHUB_ARN", GITHUB_ARN)])));
    }

    #[tokio::test]
    async fn errors_name_the_variables_and_never_a_secret() {
        let source = Fixed { secrets: [("empty", "")].into(), ..Fixed::default() };
        let cases: [(&[(&str, &str)], &str); 4] = [
            (
                &[("SYNCTRAIL_WEBHOOK_SECRET_GITHUB", "very-secret"), ("SYNCTRAIL_WEBHOOK_SECRET_GITHUB_ARN", "x")],
                "SYNCTRAIL_WEBHOOK_SECRET_GITHUB and SYNCTRAIL_WEBHOOK_SECRET_GITHUB_ARN are both set",
            ),
            (&[("SYNCTRAIL_WEBHOOK_SECRET_GITHUB_ARN", "ssm:/synctrail/github")], "names an SSM parameter"),
            (&[("SYNCTRAIL_WEBHOOK_SECRET_GITHUB_ARN", "missing")], "reading secret missing for SYNCTRAIL_WEBHOOK"),
            (&[("SYNCTRAIL_WEBHOOK_SECRET_GITHUB_ARN", "empty")], "is empty"),
        ];
        for (pairs, says) in cases {
            let error = resolve_references(vars(pairs), &source).await.expect_err(says);
            let text = error.to_string();
            assert!(text.contains(says), "{text}");
            assert!(!text.contains("very-secret"), "{text}");
        }
    }
}
