//! The read-only HTTP API over the views: citizens, payouts, batches (lines, reconciliation
//! reports as JSON and CSV), budgets, programs and the chain head under `/v1`, plus `/healthz`,
//! `/readyz`, `/metrics` and the OpenAPI document at `/v1/openapi.json`.
//!
//! Under `/v1/nation/` the citizen routes ask every shard of `[shards]` over HTTP and merge
//! the answers by shard (`nation.rs`); each shard still answers only from its own data.
//!
//! It mounts in any process that holds a `ViewReader`: `ansinh api` standalone over a data dir,
//! or `ansinh serve` next to the writer (`router` or `serve_api`). It never writes.
//!
//! Access: a bearer token from the config maps to a role (`access.rs`). Citizen IDs in paths
//! never reach a log line or a metric label unmasked: logs carry masked IDs, metrics carry the
//! route template.
//!
//! Bounds: at most `CONNECTIONS_MAX` connections (more are closed at once), each given
//! `HEADER_READ_TIMEOUT` to send a request's headers (a client trickling them is cut off), at
//! most `IN_FLIGHT_MAX` requests at once (more get 503), each answered within `REQUEST_TIMEOUT`
//! (or 503), pages of at most `batches::PAGE_LIMIT_MAX` items.

mod access;
mod batches;
pub mod client;
pub mod csv_export;
pub mod model;
pub mod nation;
mod one_off;
mod openapi;
mod reconciliation;
mod routes;

pub use access::{Access, Caller, Grant};
pub use openapi::openapi_json;
pub use reconciliation::CSV_COLUMNS;

use crate::log::Head;
use crate::metrics::Metrics;
use crate::projection::{ViewError, ViewReader};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use model::ErrorBody;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Most requests handled at once; more are answered 503 at once rather than queued.
pub const IN_FLIGHT_MAX: usize = 512;
/// Longest a request may take (a reconciliation report of a 50,000-line batch takes well under
/// a second); past it the answer is 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a client may take to send the headers of a request (or, between requests on a kept
/// alive connection, to start the next one): past it the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections open at once; a connection past it is closed as soon as it is accepted.
pub const CONNECTIONS_MAX: usize = 1_024;

/// The bounds of the API's listener (the defaults above; tests shorten them).
#[derive(Clone, Copy, Debug)]
pub struct ListenerLimits {
    pub header_read_timeout: Duration,
    pub connections_max: usize,
}

impl Default for ListenerLimits {
    fn default() -> ListenerLimits {
        ListenerLimits { header_read_timeout: HEADER_READ_TIMEOUT, connections_max: CONNECTIONS_MAX }
    }
}

/// The chain head of the log, read where the log lives (a closure so that `serve` can pass its
/// log reader and the standalone API a fixed head).
pub type HeadSource = Arc<dyn Fn() -> Result<Head, String> + Send + Sync>;
/// The views to read for one request, or why they cannot be read now (503).
pub type ViewSource = Arc<dyn Fn() -> Result<HeldViews, String> + Send + Sync>;
/// Whether this process can do its work now (`/readyz`).
pub type ReadinessSource = Arc<dyn Fn() -> Readiness + Send + Sync>;

/// What the process knows about its own state; `None` where it does not apply.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    pub broker_connected: Option<bool>,
    pub log_writable: Option<bool>,
    /// Why not ready, for people.
    pub detail: Vec<String>,
}

/// A views reader for one request. In `serve` it also holds the writer's storage handles, so
/// that the writer, which must close every handle on the data dir to reopen it after a storage
/// error, waits for the request to finish. Derefs to [`ViewReader`]; drop it when done.
#[derive(Clone)]
pub struct HeldViews {
    reader: ViewReader,
    _hold: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl HeldViews {
    /// `reader`, holding `hold` as long as it lives.
    pub fn new(reader: ViewReader, hold: Arc<dyn std::any::Any + Send + Sync>) -> HeldViews {
        HeldViews { reader, _hold: Some(hold) }
    }
}

impl std::ops::Deref for HeldViews {
    type Target = ViewReader;
    fn deref(&self) -> &ViewReader {
        &self.reader
    }
}

/// Everything a handler needs; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    views: ViewSource,
    head: HeadSource,
    access: Access,
    metrics: Arc<Metrics>,
    readiness: ReadinessSource,
    in_flight: Semaphore,
    /// The shards' APIs for `/v1/nation/` (`None`: unsharded, those routes answer 404).
    nation: Option<nation::Nation>,
}

impl ApiState {
    /// Over views that stay readable for the life of the process.
    pub fn new(views: ViewReader, head: HeadSource, tokens: &[crate::config::ApiToken], metrics: Arc<Metrics>, readiness: ReadinessSource) -> ApiState {
        let source: ViewSource = Arc::new(move || Ok(HeldViews { reader: views.clone(), _hold: None }));
        ApiState::with_view_source(source, head, tokens, metrics, readiness)
    }

    /// Over views taken anew for each request (`serve`: unavailable while the writer reopens
    /// the data dir after a storage error).
    pub fn with_view_source(
        views: ViewSource,
        head: HeadSource,
        tokens: &[crate::config::ApiToken],
        metrics: Arc<Metrics>,
        readiness: ReadinessSource,
    ) -> ApiState {
        let inner = Inner { views, head, access: Access::new(tokens), metrics, readiness, in_flight: Semaphore::new(IN_FLIGHT_MAX), nation: None };
        ApiState { inner: Arc::new(inner) }
    }

    /// With the shards' APIs that `/v1/nation/` asks. Call it on a new state, before it is
    /// cloned or served.
    pub fn with_nation(mut self, nation: Option<nation::Nation>) -> ApiState {
        Arc::get_mut(&mut self.inner).expect("with_nation is called on a new ApiState, before it is cloned").nation = nation;
        self
    }

    /// The views for this request, or 503 when they cannot be read now.
    pub fn views(&self) -> Result<HeldViews, ApiError> {
        (self.inner.views)().map_err(|why| ApiError::Unavailable(format!("the views cannot be read now: {why}")))
    }
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }
    pub fn tokens_configured(&self) -> usize {
        self.inner.access.len()
    }
}

/// An answer other than 200, with a JSON body (`ErrorBody`).
#[derive(Debug)]
pub enum ApiError {
    /// 401: token missing, malformed or unknown.
    Unauthenticated(String),
    /// 403: the token's role does not cover this.
    Forbidden(String),
    /// 404: code (`citizen_not_found`, ...) and message.
    NotFound(&'static str, String),
    /// 400: code (`citizen_id_format`, `limit_out_of_range`, ...) and why.
    BadRequest(&'static str, String),
    /// 503: overloaded or timed out.
    Unavailable(String),
    /// 502: no shard answered a `/v1/nation/` request.
    BadGateway(String),
    /// 500: logged in full, answered in general terms.
    Internal(String),
}

impl From<ViewError> for ApiError {
    fn from(e: ViewError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, "unauthenticated", m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            ApiError::NotFound(code, m) => (StatusCode::NOT_FOUND, code, m),
            ApiError::BadRequest(code, m) => (StatusCode::BAD_REQUEST, code, m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            ApiError::BadGateway(m) => (StatusCode::BAD_GATEWAY, "no_shard_answered", m),
            ApiError::Internal(m) => {
                tracing::error!(error = %crate::domain::citizen_id::log_safe_error(&m), "API request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "the views could not be read; the server log says why".to_string())
            }
        };
        let mut response = (status, Json(ErrorBody { error: code.to_string(), message })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"ansinh\""));
        }
        response
    }
}

/// Masks every run of 9 or more digits (a citizen ID inside a view key or an error message).
pub use crate::domain::citizen_id::mask_digit_runs;

/// Every route of the API, with `state` mounted.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/v1/openapi.json", get(routes::openapi))
        .route("/v1/head", get(routes::head))
        .route("/v1/citizens/{citizen_id}", get(routes::citizen))
        .route("/v1/citizens/{citizen_id}/payouts/{payout_id}", get(routes::citizen_payout))
        .route("/v1/payouts/{payout_id}", get(routes::payout))
        .route("/v1/nation/citizens/{citizen_id}", get(nation::citizen))
        .route("/v1/nation/citizens/{citizen_id}/payouts", get(nation::payouts))
        .route("/v1/nation/citizens/{citizen_id}/payouts/{payout_id}", get(nation::payout))
        .route("/v1/batches", get(batches::list))
        .route("/v1/batches/{batch_id}", get(batches::batch))
        .route("/v1/batches/{batch_id}/lines", get(batches::lines))
        .route("/v1/batches/{batch_id}/reconciliation", get(reconciliation::reconciliation))
        .route("/v1/batches/{batch_id}/reconciliation.csv", get(reconciliation::reconciliation_csv))
        .route("/v1/budgets/{province}/{program_id}/{period}", get(routes::budget))
        .route("/v1/programs/{program_id}", get(routes::program))
        .route("/v1/one-off/{program_id}/cash", get(one_off::cash))
        .fallback(routes::no_route)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Bounds concurrency and time, and records each request by route template (never by path).
async fn observe(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let response = match state.inner.in_flight.try_acquire() {
        Err(_) => ApiError::Unavailable(format!("more than {IN_FLIGHT_MAX} requests in flight; retry shortly")).into_response(),
        Ok(_permit) => match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
            Ok(r) => r,
            Err(_) => ApiError::Unavailable(format!("the request took longer than {} s", REQUEST_TIMEOUT.as_secs())).into_response(),
        },
    };
    let elapsed = started.elapsed();
    state.inner.metrics.http_request(&route, response.status().as_u16(), elapsed);
    tracing::debug!(route, status = response.status().as_u16(), micros = elapsed.as_micros() as u64, "api request");
    response
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the API server stopped: {0}")]
    Serve(std::io::Error),
}

/// Binds `listen` and serves the API until `shutdown` completes (in-flight requests finish).
pub async fn serve_api(listen: SocketAddr, state: ApiState, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|source| ServeError::Bind { addr: listen, source })?;
    serve_listener(listener, state, shutdown).await
}

/// Serves on a listener already bound (tests bind 127.0.0.1:0 and read the port first).
pub async fn serve_listener(listener: tokio::net::TcpListener, state: ApiState, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
    serve_listener_with(listener, state, shutdown, ListenerLimits::default()).await
}

/// [`serve_listener`] with other bounds. HTTP/1.1 through hyper with a timer, so that its header
/// read timeout applies (`axum::serve` sets none); on `shutdown` it stops accepting, lets the
/// requests in flight finish and closes idle connections.
pub async fn serve_listener_with(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ListenerLimits,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    if state.tokens_configured() == 0 {
        tracing::warn!("no API tokens configured: every /v1 request will be answered 401; add an [[api.tokens]] entry (token or token_sha256, role) to the config, see config/ansinh.toml");
    }
    tracing::info!(%addr, tokens = state.tokens_configured(), "HTTP API listening");
    let app = router(state);
    let slots = Arc::new(Semaphore::new(limits.connections_max));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin; the listener stays.
                    tracing::warn!(error = %e, "the API cannot accept a connection now");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(open = limits.connections_max, "API connection refused: too many open");
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let stop_requested = async move {
                let _ = stopping.wait_for(|stop| *stop).await.is_ok();
            };
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop_requested => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    let _ = stop.send(true);
    // Requests in flight finish (each within REQUEST_TIMEOUT); a connection still sending its
    // headers is cut by the header read timeout.
    let draining = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(REQUEST_TIMEOUT + limits.header_read_timeout, draining).await;
    Ok(())
}
