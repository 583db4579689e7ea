//! Read-only HTTP API over the views (issue 5).
