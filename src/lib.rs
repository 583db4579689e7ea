//! ansinh: an event-sourced engine that pays social-welfare benefits to bank accounts, keyed by
//! the 12-digit citizen ID. See ARCHITECTURE.md for the map.

pub mod api;
pub mod audit;
pub mod bench;
pub mod bus;
pub mod cli;
pub mod command;
pub mod config;
pub mod core;
pub mod domain;
pub mod engine;
pub mod event;
pub mod intake;
pub mod log;
pub mod metrics;
pub mod outcome;
pub mod projection;
pub mod schema;
pub mod shard;
pub mod timefmt;

pub use engine::{Engine, EngineError, EngineOptions};
