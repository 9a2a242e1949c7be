//! deepflow-server: an embedded deepflow-store with SQL and Prometheus-compatible HTTP APIs and
//! Prometheus remote_write ingest. See README.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::{Parser, Subcommand};
use deepflow_store::arrow::ipc::writer::StreamWriter;
use deepflow_store::arrow::json::ArrayWriter;
use deepflow_store::prom::promql::{Labels, PromEngine, PromError, QueryResult, Series};
use deepflow_store::prom::{self, SampleWriter, remote_write};
use deepflow_store::{QueryEngine, Storage};

mod apm;
mod controller;
mod ingest_grpc;
mod otlp;
mod pyroscope;
mod skywalking;
mod tags;

#[derive(Parser)]
#[command(name = "deepflow-server", version, about = "deepflow-rs server: embedded store, SQL and Prometheus APIs")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the HTTP APIs over the store in DIR.
    Run {
        /// Store directory (created if missing).
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        /// HTTP listen address (SQL, Prometheus query API, remote_write).
        #[arg(long, default_value = "127.0.0.1:20416")]
        listen: SocketAddr,
        /// Require `Authorization: Bearer TOKEN` on every HTTP request (401 otherwise).
        #[arg(long)]
        token: Option<String>,
        /// Largest request body accepted, bytes (413 above).
        #[arg(long, default_value_t = 32 << 20)]
        max_body: usize,
        /// Write buffered remote_write samples to Parquet at least this often, milliseconds
        /// (the crash loss window of acknowledged samples).
        #[arg(long, default_value_t = 1000)]
        flush_ms: u64,
        #[command(flatten)]
        otlp: otlp::OtlpArgs,
        #[command(flatten)]
        apm: apm::ApmArgs,
        #[command(flatten)]
        agents: ingest_grpc::IngestArgs,
        #[command(flatten)]
        tags: tags::TagArgs,
        #[command(flatten)]
        controller: controller::ControllerArgs,
    },
}

struct AppState {
    sql: Arc<QueryEngine>,
    prom: PromEngine,
    samples: Mutex<SampleWriter>,
    token: Option<String>,
    controller: Arc<controller::Controller>,
}

type St = State<Arc<AppState>>;

fn main() {
    let cli = Cli::parse();
    let Cmd::Run { data, listen, token, max_body, flush_ms, otlp, apm, agents, tags, controller } = cli.cmd;
    if let Err(e) = run(data, listen, token, max_body, flush_ms, otlp, apm, agents, tags, controller) {
        eprintln!("deepflow-server: {e}");
        std::process::exit(1);
    }
}

fn run(
    data: PathBuf,
    listen: SocketAddr,
    token: Option<String>,
    max_body: usize,
    flush_ms: u64,
    otlp_args: otlp::OtlpArgs,
    apm_args: apm::ApmArgs,
    agents_args: ingest_grpc::IngestArgs,
    tag_args: tags::TagArgs,
    ctl_args: controller::ControllerArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&data)?;
    let storage = Storage::local(&data)?;
    // opened outside the server runtime: the store blocks on its own runtime while opening
    let engine = Arc::new(QueryEngine::open(storage.clone())?);
    prom::register(&engine)?;
    // before the ingest writers open: they take the tagger
    tags::init(&data, &tag_args, &engine)?;
    let flush = Duration::from_millis(flush_ms.max(10));
    let otlp_sink = otlp::Otlp::new(storage.clone(), token.clone(), max_body, flush)?;
    let agent_ingest = ingest_grpc::AgentIngest::start(storage.clone(), token.clone(), agents_args.commit_ms)?;
    let writer = SampleWriter::new(storage, 1 << 20, flush)?;
    let ctl = controller::Controller::open(&data, &ctl_args)?;
    let state = Arc::new(AppState {
        prom: PromEngine::new(engine.clone()),
        sql: engine,
        samples: Mutex::new(writer),
        token: token.filter(|t| !t.is_empty()),
        controller: ctl.clone(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    // the state is dropped last, here, outside the runtime: its store owns a runtime of its own,
    // and a task that held the last reference would drop that runtime on a worker thread, which
    // panics (seen when a listener could not be bound and the tasks were torn down)
    let keep = state.clone();
    let res = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        eprintln!(
            "deepflow-server: listening on http://{} (SQL: POST /v1/query, Prometheus API: /api/v1/, remote_write: POST /api/v1/write), data in {}",
            listener.local_addr()?,
            data.display()
        );
        let ticker = state.clone();
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(flush);
            loop {
                iv.tick().await;
                let st = ticker.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = st.samples.lock().unwrap_or_else(|e| e.into_inner()).tick() {
                        eprintln!("deepflow-server: flush: {e}");
                    }
                })
                .await;
            }
        });
        otlp::spawn(&otlp_args, otlp_sink.clone(), flush).await?;
        if let Some(grpc) = ingest_grpc::spawn(agents_args.grpc_listen, agent_ingest, max_body).await? {
            // announce this ingester to the controllers sharing the store
            let m = controller::Membership::join(&data, &ctl_args, grpc, listener.local_addr()?)?;
            m.spawn();
            ctl.set_membership(m);
        }
        let shutdown_state = state.clone();
        let apm_routes = apm::start(&apm_args, &state, max_body).await?;
        axum::serve(listener, app(state, max_body).merge(apm_routes))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        let _ = tokio::task::spawn_blocking(move || {
            shutdown_state.samples.lock().unwrap_or_else(|e| e.into_inner()).flush()
        })
        .await;
        let _ = tokio::task::spawn_blocking(move || otlp_sink.flush()).await;
        ctl.leave();
        Ok::<(), Box<dyn std::error::Error>>(())
    });
    drop(rt);
    drop(keep);
    res
}

fn app(state: Arc<AppState>, max_body: usize) -> Router {
    Router::new()
        .route("/v1/query", post(sql_query).get(sql_query))
        .route("/api/v1/write", post(remote_write_handler))
        .route("/api/v1/query", get(prom_query).post(prom_query))
        .route("/api/v1/query_range", get(prom_query_range).post(prom_query_range))
        .route("/api/v1/series", get(prom_series).post(prom_series))
        .route("/api/v1/labels", get(prom_labels).post(prom_labels))
        .route("/api/v1/label/{name}/values", get(prom_label_values))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/-/healthy", get(|| async { "OK" }))
        .merge(controller::routes(state.controller.clone()))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn auth(State(st): St, req: Request, next: Next) -> Response {
    if let Some(tok) = &st.token {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_eq(t.trim().as_bytes(), tok.as_bytes()));
        if !ok {
            let mut r = json_error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer token");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `{"status":"error","errorType":…,"error":…}`: Prometheus's error shape, used for every error.
fn json_error(code: StatusCode, kind: &str, msg: &str) -> Response {
    let body = serde_json::json!({"status": "error", "errorType": kind, "error": msg});
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Parameters from the query string and, for form posts, the body (repeated keys kept).
fn params(raw: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, Response> {
    let mut out: Vec<(String, String)> = match raw {
        Some(q) => serde_urlencoded_pairs(q.as_bytes())?,
        None => Vec::new(),
    };
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/json") {
        let v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| json_error(StatusCode::BAD_REQUEST, "bad_data", &format!("invalid JSON body: {e}")))?;
        if let Some(o) = v.as_object() {
            for (k, v) in o {
                match v {
                    serde_json::Value::String(s) => out.push((k.clone(), s.clone())),
                    serde_json::Value::Array(a) => {
                        out.extend(a.iter().filter_map(|x| x.as_str()).map(|s| (k.clone(), s.to_string())))
                    }
                    other => out.push((k.clone(), other.to_string())),
                }
            }
        }
    } else if !body.is_empty() {
        out.extend(serde_urlencoded_pairs(body)?);
    }
    Ok(out)
}

fn serde_urlencoded_pairs(b: &[u8]) -> Result<Vec<(String, String)>, Response> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{}", String::from_utf8_lossy(b))
            .parse()
            .map_err(|_| json_error(StatusCode::BAD_REQUEST, "bad_data", "malformed URL-encoded parameters"))?,
    )
    .map(|q| q.0)
    .map_err(|e| json_error(StatusCode::BAD_REQUEST, "bad_data", &format!("malformed parameters: {e}")))
}

fn param<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

// ---------- SQL ----------

async fn sql_query(State(st): St, RawQuery(raw): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let p = match params(raw.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(sql) = param(&p, "sql").filter(|s| !s.trim().is_empty()) else {
        return json_error(StatusCode::BAD_REQUEST, "bad_data", "missing parameter \"sql\"");
    };
    let batches = match st.sql.query_async(sql).await {
        Ok(b) => b,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "bad_data", &e.to_string()),
    };
    let batches: Vec<_> = match batches.iter().map(deepflow_store::format::plain).collect::<Result<Vec<_>, _>>() {
        Ok(b) => b,
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("application/vnd.apache.arrow.stream") {
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => Arc::new(deepflow_store::arrow::datatypes::Schema::empty()),
        };
        let mut buf = Vec::new();
        let res = (|| {
            let mut w = StreamWriter::try_new(&mut buf, &schema)?;
            for b in &batches {
                w.write(b)?;
            }
            w.finish()
        })();
        return match res {
            Ok(()) => ([(header::CONTENT_TYPE, "application/vnd.apache.arrow.stream")], buf).into_response(),
            Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
        };
    }
    let columns: Vec<serde_json::Value> = batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect()
        })
        .unwrap_or_default();
    let mut rows = Vec::new();
    let res = (|| {
        let mut w = ArrayWriter::new(&mut rows);
        for b in &batches {
            w.write(b)?;
        }
        w.finish()
    })();
    if let Err(e) = res {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string());
    }
    if rows.is_empty() {
        rows.extend_from_slice(b"[]");
    }
    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut out = format!(
        "{{\"status\":\"success\",\"columns\":{},\"row_count\":{n},\"rows\":",
        serde_json::Value::from(columns)
    )
    .into_bytes();
    out.extend_from_slice(&rows);
    out.push(b'}');
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

// ---------- remote_write ----------

async fn remote_write_handler(State(st): St, body: Bytes) -> Response {
    let samples = match remote_write::decode(&body) {
        Ok(s) => s,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "bad_data", &format!("remote_write: {e}")),
    };
    let n = samples.len();
    let res = tokio::task::spawn_blocking(move || {
        tags::append_samples(&mut st.samples.lock().unwrap_or_else(|e| e.into_inner()), samples)
    })
    .await;
    match res {
        Ok(Ok(())) => (StatusCode::NO_CONTENT, [("x-deepflow-samples", n.to_string())]).into_response(),
        Ok(Err(e)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
    }
}

// ---------- Prometheus query API ----------

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A Prometheus time parameter: unix seconds (float) or RFC 3339.
fn parse_time(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        return f.is_finite().then(|| (f * 1000.0).round() as i64);
    }
    rfc3339_ms(s)
}

fn rfc3339_ms(s: &str) -> Option<i64> {
    // YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
        let digits = s.get(start..i)?;
        let padded: String = digits.chars().chain("000".chars()).take(3).collect();
        frac_ms = padded.parse().ok()?;
    }
    let off_min = match b.get(i)? {
        b'Z' | b'z' => 0,
        c @ (b'+' | b'-') => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let m = oh * 60 + om;
            if *c == b'-' { -m } else { m }
        }
        _ => return None,
    };
    // days from civil (Howard Hinnant)
    let (yy, mm) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + se - off_min * 60) * 1000) + frac_ms)
}

/// A Prometheus duration parameter: float seconds or `1h30m`-style.
fn parse_duration_ms(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        return f.is_finite().then(|| (f * 1000.0).round() as i64);
    }
    let mut total = 0i64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let n: i64 = num.parse().ok()?;
        num.clear();
        let mult = match unit.as_str() {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total += n.checked_mul(mult)?;
        any = true;
    }
    (any && num.is_empty()).then_some(total)
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn ts_json(ms: i64) -> serde_json::Value {
    if ms % 1000 == 0 { serde_json::Value::from(ms / 1000) } else { serde_json::Value::from(ms as f64 / 1000.0) }
}

fn labels_obj(ls: &Labels) -> serde_json::Value {
    serde_json::Value::Object(ls.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone()))).collect())
}

fn success(data: serde_json::Value) -> Response {
    let body = serde_json::json!({"status": "success", "data": data});
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn prom_error(e: PromError) -> Response {
    match e {
        PromError::BadData(m) => json_error(StatusCode::BAD_REQUEST, "bad_data", &m),
        PromError::Execution(m) => json_error(StatusCode::UNPROCESSABLE_ENTITY, "execution", &m),
        PromError::Store(e) => json_error(StatusCode::UNPROCESSABLE_ENTITY, "execution", &e.to_string()),
    }
}

fn bad(msg: String) -> Response {
    json_error(StatusCode::BAD_REQUEST, "bad_data", &msg)
}

fn matrix_json(m: &[Series]) -> serde_json::Value {
    serde_json::Value::Array(
        m.iter()
            .map(|s| {
                serde_json::json!({
                    "metric": labels_obj(&s.labels),
                    "values": s.points.iter().map(|(t, v)| serde_json::json!([ts_json(*t), fmt_value(*v)])).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

async fn prom_query(State(st): St, RawQuery(raw): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let p = match params(raw.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(q) = param(&p, "query") else { return bad("invalid parameter \"query\": query is empty".into()) };
    let t = match param(&p, "time") {
        Some(s) => match parse_time(s) {
            Some(t) => t,
            None => return bad(format!("invalid parameter \"time\": cannot parse \"{s}\" to a valid timestamp")),
        },
        None => now_ms(),
    };
    match st.prom.instant(q, t).await {
        Ok(QueryResult::Scalar(t, v)) => {
            success(serde_json::json!({"resultType": "scalar", "result": [ts_json(t), fmt_value(v)]}))
        }
        Ok(QueryResult::String(t, s)) => {
            success(serde_json::json!({"resultType": "string", "result": [ts_json(t), s]}))
        }
        Ok(QueryResult::Vector(t, v)) => success(serde_json::json!({
            "resultType": "vector",
            "result": v.iter().map(|s| serde_json::json!({"metric": labels_obj(&s.labels), "value": [ts_json(t), fmt_value(s.value)]})).collect::<Vec<_>>(),
        })),
        Ok(QueryResult::Matrix(m)) => success(serde_json::json!({"resultType": "matrix", "result": matrix_json(&m)})),
        Err(e) => prom_error(e),
    }
}

async fn prom_query_range(State(st): St, RawQuery(raw): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let p = match params(raw.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(q) = param(&p, "query") else { return bad("invalid parameter \"query\": query is empty".into()) };
    let get_t = |k: &str| match param(&p, k) {
        Some(s) => parse_time(s)
            .ok_or_else(|| bad(format!("invalid parameter \"{k}\": cannot parse \"{s}\" to a valid timestamp"))),
        None => Err(bad(format!("invalid parameter \"{k}\": cannot parse \"\" to a valid timestamp"))),
    };
    let (start, end) = match (get_t("start"), get_t("end")) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let step = match param(&p, "step").and_then(parse_duration_ms) {
        Some(s) => s,
        None => return bad("invalid parameter \"step\": cannot parse \"\" to a valid duration".into()),
    };
    match st.prom.range(q, start, end, step).await {
        Ok(m) => success(serde_json::json!({"resultType": "matrix", "result": matrix_json(&m)})),
        Err(e) => prom_error(e),
    }
}

fn meta_range(p: &[(String, String)]) -> Result<(i64, i64), Response> {
    let start = match param(p, "start") {
        Some(s) => parse_time(s).ok_or_else(|| bad(format!("invalid parameter \"start\": cannot parse \"{s}\"")))?,
        None => 0,
    };
    let end = match param(p, "end") {
        Some(s) => parse_time(s).ok_or_else(|| bad(format!("invalid parameter \"end\": cannot parse \"{s}\"")))?,
        None => now_ms() + 86_400_000,
    };
    Ok((start, end))
}

fn matchers(p: &[(String, String)]) -> Vec<String> {
    p.iter().filter(|(k, _)| k == "match[]").map(|(_, v)| v.clone()).collect()
}

async fn prom_series(State(st): St, RawQuery(raw): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let p = match params(raw.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let m = matchers(&p);
    if m.is_empty() {
        return bad("no match[] parameter provided".into());
    }
    let (start, end) = match meta_range(&p) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match st.prom.series(&m, start, end).await {
        Ok(s) => success(serde_json::Value::Array(s.iter().map(labels_obj).collect())),
        Err(e) => prom_error(e),
    }
}

async fn prom_labels(State(st): St, RawQuery(raw): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let p = match params(raw.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (start, end) = match meta_range(&p) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match st.prom.label_names(&matchers(&p), start, end).await {
        Ok(n) => success(serde_json::Value::from(n)),
        Err(e) => prom_error(e),
    }
}

async fn prom_label_values(State(st): St, Path(name): Path<String>, RawQuery(raw): RawQuery) -> Response {
    let p = match params(raw.as_deref(), &HeaderMap::new(), &[]) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (start, end) = match meta_range(&p) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match st.prom.label_values(&name, &matchers(&p), start, end).await {
        Ok(v) => success(serde_json::Value::from(v)),
        Err(e) => prom_error(e),
    }
}

async fn buildinfo() -> Response {
    success(
        serde_json::json!({"version": "2.42.0", "revision": "deepflow-rs", "branch": "", "buildUser": "", "buildDate": "", "goVersion": ""}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1714557600.5"), Some(1_714_557_600_500));
        assert_eq!(parse_time("2024-05-01T10:00:00Z"), Some(1_714_557_600_000));
        assert_eq!(parse_time("2024-05-01T12:00:00.250+02:00"), Some(1_714_557_600_250));
        assert_eq!(parse_time("nope"), None);
        assert_eq!(parse_duration_ms("15s"), Some(15_000));
        assert_eq!(parse_duration_ms("1m30s"), Some(90_000));
        assert_eq!(parse_duration_ms("2.5"), Some(2_500));
        assert_eq!(parse_duration_ms("5x"), None);
        assert_eq!(fmt_value(1e21), "1000000000000000000000");
        assert_eq!(fmt_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(fmt_value(0.1), "0.1");
    }
}
