//! Prometheus metrics of the engine, the transport and the API (issue 5).
