//! The Lambda front end: a Function URL request (payload format 2.0) in, its response out. The body arrives as
//! text, or base64 when it is not (`isBase64Encoded`); Function URLs refuse requests over 6 MB themselves.

use crate::{metrics, Answer, Ingest, Request};
use aws_lambda_events::event::lambda_function_urls::{LambdaFunctionUrlRequest, LambdaFunctionUrlResponse};
use aws_lambda_events::http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use aws_lambda_events::http::HeaderValue;
use base64::Engine as _;
use std::borrow::Cow;
use std::time::Instant;
use synctrail::ingress::Headers;
use synctrail_lambda::InvocationContext;

/// Answers one invocation and prints its metric line (namespace `namespace`).
pub async fn handle(
    ingest: &Ingest,
    request: &LambdaFunctionUrlRequest,
    context: &InvocationContext,
    namespace: &str,
) -> LambdaFunctionUrlResponse {
    let started = Instant::now();
    let answer = respond(ingest, request, context).await;
    let function = context.function.as_deref().and_then(|f| f.split(':').next()).unwrap_or(metrics::UNKNOWN_SOURCE);
    println!("{}", metrics::emf_line(&answer, function, namespace, chrono::Utc::now(), started.elapsed()));
    response(&answer)
}

/// The answer to one Function URL request.
pub async fn respond(ingest: &Ingest, request: &LambdaFunctionUrlRequest, context: &InvocationContext) -> Answer {
    let http = &request.request_context.http;
    let method = http.method.as_deref().unwrap_or_default();
    let path = http.path.as_deref().or(request.raw_path.as_deref()).unwrap_or("/");
    let body = match body(request) {
        Some(body) => body,
        None => {
            let answer = Answer::bad_request();
            answer.log(0);
            return answer;
        }
    };
    let headers: Headers = request.headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))).collect();
    let request = Request { method, path, headers: &headers, body: &body };
    ingest.handle(&request, &context.invocation()).await
}

/// The raw body bytes; `None` when it claims base64 and is not.
fn body(request: &LambdaFunctionUrlRequest) -> Option<Cow<'_, [u8]>> {
    let text = request.body.as_deref().unwrap_or_default();
    if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD.decode(text).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(text.as_bytes()))
    }
}

/// The Function URL response of `answer`: its JSON, never cached, with `Allow` or `Retry-After` when it has them.
pub fn response(answer: &Answer) -> LambdaFunctionUrlResponse {
    let mut response = LambdaFunctionUrlResponse::default();
    response.status_code = i64::from(answer.status);
    response.body = Some(answer.body_text());
    response.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(allow) = answer.allow {
        response.headers.insert(ALLOW, HeaderValue::from_static(allow));
    }
    if let Some(seconds) = answer.retry_after {
        response.headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
