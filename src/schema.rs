//! JSON Schemas for every command and event type (written by a helper; see events/README.md).
