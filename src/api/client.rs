//! A GET to another shard's API: HTTP/1.1 through hyper's client connection (hyper already
//! serves the API; its `client` feature adds only `want`), one connection per request, bounded
//! in time and in the size of the answer. Used by the `/v1/nation/` routes and by
//! `ansinh audit national-checkpoint` for the head of a shard whose data dir is in use.

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use std::time::Duration;

/// Largest answer read from a shard (a citizen's view is a few KiB).
pub const ANSWER_BYTES_MAX: usize = 4 * 1024 * 1024;

/// `GET http://{addr}{path}` with this `Authorization` header; the status and the body, or why
/// no answer came (cannot connect, no answer within `timeout`, a broken answer).
pub async fn get(addr: &str, path: &str, authorization: Option<&HeaderValue>, timeout: Duration) -> Result<(StatusCode, Vec<u8>), String> {
    let work = async {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| format!("no HTTP connection to {addr}: {e}"))?;
        let driver = tokio::spawn(connection);
        let mut request = Request::get(path).header(header::HOST, addr).header(header::CONNECTION, "close");
        if let Some(a) = authorization {
            request = request.header(header::AUTHORIZATION, a.clone());
        }
        let request = request.body(Body::empty()).map_err(|e| format!("cannot build the request for {path}: {e}"))?;
        let response = sender.send_request(request).await.map_err(|e| format!("{addr} did not answer: {e}"))?;
        let status = response.status();
        let body = axum::body::to_bytes(Body::new(response.into_body()), ANSWER_BYTES_MAX)
            .await
            .map_err(|e| format!("the answer of {addr} could not be read (or is over {ANSWER_BYTES_MAX} bytes): {e}"))?;
        driver.abort();
        Ok((status, body.to_vec()))
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| format!("{addr} gave no answer within {} ms", timeout.as_millis()))?
}
