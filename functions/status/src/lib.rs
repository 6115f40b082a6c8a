//! The status function: a Lambda Function URL answering `GET /events/{event_id}` with the event's
//! [`StatusReport`] as JSON (who may call it is the Function URL's IAM auth, set in the template).
//!
//! | request | answer |
//! |---|---|
//! | `GET /events/{id}`, recorded | 200, the status report |
//! | `GET /events/{id}`, never recorded | 404, `{"error", "event_id"}` |
//! | `GET /events/{id}`, not a valid event id | 400, `{"error"}` with the reason |
//! | `/events/{id}` with another method | 405, `Allow: GET` |
//! | any other path | 404 |
//! | the store failed | 503 with `Retry-After` when retrying may help, else 500 |

mod reply;
mod route;

use aws_lambda_events::event::lambda_function_urls::{LambdaFunctionUrlRequest, LambdaFunctionUrlResponse};
use route::{route, Route, ALLOWED_METHOD};
use synctrail::model::{EventId, StatusReport};
use synctrail::store::EventStore;

/// Answers one Function URL request from `store`.
pub async fn respond(store: &dyn EventStore, request: &LambdaFunctionUrlRequest) -> LambdaFunctionUrlResponse {
    let http = &request.request_context.http;
    let method = http.method.as_deref().unwrap_or_default();
    let path = http.path.as_deref().or(request.raw_path.as_deref()).unwrap_or("/");
    match route(method, path) {
        Route::Event(id) => event_status(store, &id).await,
        Route::MethodNotAllowed => reply::method_not_allowed(method, ALLOWED_METHOD),
        Route::NotFound => reply::no_route(path),
    }
}

async fn event_status(store: &dyn EventStore, id: &str) -> LambdaFunctionUrlResponse {
    let event_id = match EventId::parse(id) {
        Ok(event_id) => event_id,
        Err(e) => return reply::invalid_id(&e.to_string()),
    };
    match store.get_event(&event_id).await {
        Ok(Some(record)) => reply::json(200, &StatusReport::from(&record)),
        Ok(None) => reply::unknown_event(&event_id),
        Err(e) => reply::store_failed(&event_id, &e),
    }
}

#[cfg(test)]
mod tests;
