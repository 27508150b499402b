//! What the example service's tests share: sending a request, and the servers' URLs.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// One request: its status and body.
pub async fn send(app: &Router, method: Method, uri: &str, json: Option<String>) -> (StatusCode, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(uri);
    if json.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(json.map_or_else(Body::empty, Body::from)).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

pub use cached_query_examples::urls;
