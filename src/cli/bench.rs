//! `ansinh bench <suite>`: benchmarks that print ratios against a baseline measured in the same
//! run (issue 6).

use super::CliResult;
use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {}

pub fn run(_config: &Config, _args: &BenchArgs) -> CliResult {
    Err("not built yet".into())
}
