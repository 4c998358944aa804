//! Request plumbing: body limits, dispatch to `/v1` (Stripe) or `/_sandbox` (test controls),
//! and JSON responses.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::state::Shared;

/// Stripe refuses bodies far smaller than this; it only guards the sandbox's memory.
const MAX_BODY_BYTES: usize = 1 << 20;

pub type Body = Full<Bytes>;

/// What a handler sees of a request, body already read.
pub struct Req {
    pub method: hyper::Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

pub async fn route(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"error": {"type": "invalid_request_error",
                    "message": "The request body could not be read or is too large."}}),
            )
        }
    };
    let request = Req {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    if request.path == "/v1" || request.path.starts_with("/v1/") {
        crate::api::handle(&shared, request).await
    } else if request.path.starts_with("/_sandbox/") {
        crate::admin::handle(&shared, request).await
    } else {
        let message = format!(
            "Unrecognized request URL ({}: {}).",
            request.method, request.path
        );
        json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": {"type": "invalid_request_error", "message": message}}),
        )
    }
}

pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    bytes_response(
        status,
        Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
    )
}

pub fn bytes_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
