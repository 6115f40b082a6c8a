//! Which resource a request names: `GET /events/{id}`, a known path with another method, or nothing.

/// The method the status function serves.
pub(crate) const ALLOWED_METHOD: &str = "GET";

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /events/{id}`: the id, percent-decoded but not yet checked.
    Event(String),
    /// `/events/{id}` with a method other than GET.
    MethodNotAllowed,
    /// Any other path.
    NotFound,
}

/// Routes `method` on `path` (the URL path, without the query string).
pub(crate) fn route(method: &str, path: &str) -> Route {
    let Some(raw_id) = path.strip_prefix("/events/").filter(|rest| !rest.contains('/')) else {
        return Route::NotFound;
    };
    if method != ALLOWED_METHOD {
        return Route::MethodNotAllowed;
    }
    // An id that does not decode is passed on as sent: its `%` makes it an invalid id, which is the useful answer.
    Route::Event(percent_decode(raw_id).unwrap_or_else(|| raw_id.to_owned()))
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = text.get(i + 1..i + 3).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_on_an_event_path_names_the_event() {
        assert_eq!(route("GET", "/events/gh-delivery-72d3162e"), Route::Event("gh-delivery-72d3162e".into()));
    }

    #[test]
    fn percent_encoded_ids_are_decoded() {
        assert_eq!(route("GET", "/events/shop%3A42"), Route::Event("shop:42".into()));
        assert_eq!(route("GET", "/events/bad%zz"), Route::Event("bad%zz".into()));
        assert_eq!(route("GET", "/events/cut%4"), Route::Event("cut%4".into()));
    }

    #[test]
    fn other_methods_on_an_event_path_are_not_allowed() {
        assert_eq!(route("POST", "/events/e-1"), Route::MethodNotAllowed);
        assert_eq!(route("get", "/events/e-1"), Route::MethodNotAllowed);
    }

    #[test]
    fn other_paths_are_not_found_whatever_the_method() {
        for path in ["/", "/events", "/events/e-1/history", "/event/e-1", "events/e-1"] {
            assert_eq!(route("GET", path), Route::NotFound, "{path}");
            assert_eq!(route("DELETE", path), Route::NotFound, "{path}");
        }
    }
}
