//! Pyroscope ingest: `POST /ingest` (the Pyroscope server's upload API) on the main HTTP port.
//! Bodies are decoded by `deepflow_protocols::ingest::pyroscope` (folded, lines, pprof, plain or
//! gzip, bare or multipart) into `profile` rows, tagged with `--inventory` ([`crate::tags`]).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use deepflow_protocols::ingest::pyroscope as py;

use crate::apm::ApmSink;

/// The `/ingest` route.
pub fn routes<S: Clone + Send + Sync + 'static>(sink: Arc<ApmSink>) -> Router<S> {
    Router::new().route("/ingest", post(ingest)).with_state(sink)
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

async fn ingest(
    State(sink): State<Arc<ApmSink>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bad = |m: String| crate::json_error(StatusCode::BAD_REQUEST, "bad_data", &format!("pyroscope: {m}"));
    let pairs = match crate::serde_urlencoded_pairs(raw.as_deref().unwrap_or("").as_bytes()) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let params = match py::IngestParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(p) => p,
        Err(e) => return bad(e.to_string()),
    };
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    // decoding a large pprof is CPU work: off the async workers
    let res = tokio::task::spawn_blocking(move || py::decode(&params, ct.as_deref(), &body, now_us())).await;
    let rows = match res {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return bad(e.to_string()),
        Err(e) => return crate::json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
    };
    let n = rows.len();
    if let Err(r) = sink.append_profiles(rows).await {
        return r;
    }
    let body = serde_json::json!({"status": "success", "rows": n});
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}
