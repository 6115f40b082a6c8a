//! How many expired leases one sweep looks at: `SYNCTRAIL_SWEEP_LIMIT`, default [`DEFAULT_LIMIT`].

/// The environment variable that sets the limit.
pub const LIMIT_VAR: &str = "SYNCTRAIL_SWEEP_LIMIT";

/// The limit when [`LIMIT_VAR`] is unset or empty.
pub const DEFAULT_LIMIT: usize = 1000;

/// [`LIMIT_VAR`] is not a whole number of at least 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {LIMIT_VAR}={value:?} is invalid: expected a whole number of at least 1")]
pub struct InvalidLimit {
    /// The value found.
    pub value: String,
}

/// The limit from the environment.
pub fn limit_from_env() -> Result<usize, InvalidLimit> {
    parse_limit(std::env::var(LIMIT_VAR).ok().as_deref())
}

/// The limit a value of [`LIMIT_VAR`] sets (`None` or blank: the default).
pub fn parse_limit(value: Option<&str>) -> Result<usize, InvalidLimit> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| InvalidLimit { value: value.unwrap_or_default().to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_or_blank_limit_is_the_default() {
        assert_eq!(parse_limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(parse_limit(Some(" ")), Ok(DEFAULT_LIMIT));
    }

    #[test]
    fn a_whole_number_sets_the_limit() {
        assert_eq!(parse_limit(Some("250")), Ok(250));
        assert_eq!(parse_limit(Some(" 7\n")), Ok(7));
    }

    #[test]
    fn zero_negative_and_non_numbers_are_refused_with_the_value() {
        for value in ["0", "-5", "lots", "1e3"] {
            let error = parse_limit(Some(value)).expect_err(value);
            assert_eq!(error.value, value);
            assert!(error.to_string().contains(LIMIT_VAR), "{error}");
        }
    }
}
