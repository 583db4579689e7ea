//! `ansinh api`: the HTTP query API standalone over a data dir (issue 5).

use super::CliResult;
use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct ApiArgs {}

pub fn run(_config: &Config, _args: &ApiArgs) -> CliResult {
    Err("not built yet".into())
}
