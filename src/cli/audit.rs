//! `ansinh audit ...` and `ansinh rebuild` (issue 4).

use super::CliResult;
use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub what: AuditCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {}

#[derive(clap::Args, Debug)]
pub struct RebuildArgs {}

pub fn run(_config: &Config, args: &AuditArgs) -> CliResult {
    match args.what {}
}

pub fn rebuild(_config: &Config, _args: &RebuildArgs) -> CliResult {
    Err("not built yet".into())
}
