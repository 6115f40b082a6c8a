//! Which route a request names: `POST /webhooks/{source}`, a webhook path with another method, or nothing.

/// The method webhooks are delivered with.
pub const WEBHOOK_METHOD: &str = "POST";

/// What a request line names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'p> {
    /// `POST /webhooks/{source}`: the source as written in the path (not yet checked).
    Webhook(&'p str),
    /// `/webhooks/{source}` with another method.
    MethodNotAllowed,
    /// Any other path.
    NotFound,
}

/// Routes `method` on `path` (the URL path, without the query string).
pub fn route<'p>(method: &str, path: &'p str) -> Route<'p> {
    let Some(source) = path.strip_prefix("/webhooks/").filter(|s| !s.is_empty() && !s.contains('/')) else {
        return Route::NotFound;
    };
    if method == WEBHOOK_METHOD {
        Route::Webhook(source)
    } else {
        Route::MethodNotAllowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_on_a_webhook_path_names_the_source() {
        assert_eq!(route("POST", "/webhooks/github"), Route::Webhook("github"));
        assert_eq!(route("POST", "/webhooks/erp_2"), Route::Webhook("erp_2"));
    }

    #[test]
    fn other_methods_on_a_webhook_path_are_not_allowed() {
        for method in ["GET", "PUT", "post"] {
            assert_eq!(route(method, "/webhooks/github"), Route::MethodNotAllowed, "{method}");
        }
    }

    #[test]
    fn other_paths_are_not_found_whatever_the_method() {
        for path in ["/", "/webhooks", "/webhooks/", "/webhooks/github/", "/webhooks/a/b", "/webhook/github"] {
            assert_eq!(route("POST", path), Route::NotFound, "{path}");
        }
    }
}
