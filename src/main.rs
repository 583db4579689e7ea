//! The `ansinh` command line. Control flow lives in `cli/`; the engine is the library.

use ansinh::cli;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// See Cargo.toml: sled's allocation pattern is where glibc's malloc spends most.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc settings for the engine's pattern, which frees and takes back tens of MB per
/// group (measured on `bench embedded --lines 400000`: system time 7.7 s -> 3.2-5.1 s with
/// `MIMALLOC_ALLOW_THP=0`):
/// - no transparent huge pages: each fresh 2 MiB page was faulted in and zeroed by the kernel
///   (a fifth of all samples in `clear_page_erms`);
/// - freed memory goes back to the OS after 1 s instead of 10 ms, so a group reuses what the
///   one before it freed (the process still gives memory back when it idles).
///
/// An explicit `MIMALLOC_ALLOW_THP` or `MIMALLOC_PURGE_DELAY` in the environment wins.
fn tune_allocator() {
    // The index of `mi_option_purge_delay` in `mi_option_t` of mimalloc v3
    // (`c_src/mimalloc/v3/include/mimalloc.h` of libmimalloc-sys 0.1.49, pinned in Cargo.toml,
    // which builds v3 by default). Changed only if it holds its documented default (10 ms), so a
    // renumbered enum leaves it alone rather than setting another option.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: mimalloc's option calls take plain integers and may be called at any time; this
    // runs first in main, before any other thread exists.
    unsafe {
        use libmimalloc_sys::{mi_option_get, mi_option_set};
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() && mi_option_get(PURGE_DELAY) == 10 {
            mi_option_set(PURGE_DELAY, 1_000);
        }
    }
    // mimalloc reads `allow_thp` once, before main; what it would then do is this prctl: no
    // transparent huge pages for this process (and its children). Linux only.
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments and changes no memory of ours.
        let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

#[derive(Parser)]
#[command(name = "ansinh", version, about = "Cashless social-welfare disbursement engine: event-sourced, hash-chained, keyed by citizen ID")]
struct Cli {
    /// Config file (TOML). Defaults apply when the default path is absent.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (overrides engine.data_dir from the config).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run a realistic province month end to end on the embedded engine (no broker needed).
    Demo(cli::demo::DemoArgs),
    /// Write the demo's month as command files (rules, enrollments, batches) for `publish`.
    DemoFiles(cli::demo_files::DemoFilesArgs),
    /// Apply commands from a JSON Lines file, or a payout list from a CSV file.
    Submit(cli::submit::SubmitArgs),
    /// Print a view: citizen, batch, payout or budget.
    Show(cli::show::ShowArgs),
    /// Run the engine against RabbitMQ: consume commands, reply, relay events.
    Serve(cli::serve::ServeArgs),
    /// The reference bank connector: settle one BIN's payout instructions over RabbitMQ.
    BankConnector(cli::bank::BankArgs),
    /// The agency side: publish commands (JSON Lines or a CSV list) over RabbitMQ and print the replies.
    Publish(cli::publish::PublishArgs),
    /// Auditor's tools: export the log, verify the chain and the views, replay as of a point.
    Audit(cli::audit::AuditArgs),
    /// Drop every view and rebuild it from the log.
    Rebuild(cli::audit::RebuildArgs),
    /// Serve the read-only HTTP API over a data dir.
    Api(cli::api::ApiArgs),
    /// Benchmarks: engine and broker throughput as ratios against raw baselines, replay, memory, latency.
    Bench(cli::bench::BenchArgs),
    /// Write the JSON Schemas of every command and event type (generated from the Rust types).
    Schema {
        #[arg(long, default_value = "events/schemas")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    tune_allocator();
    // `ansinh show … | head`: output goes through cli::out, which ends the process quietly
    // when stdout's reader went away; this catches a print that did not (an eprintln! to a
    // closed stderr) the same way, instead of a panic message and a backtrace.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload().downcast_ref::<String>().map(String::as_str).or_else(|| info.payload().downcast_ref::<&str>().copied());
        if message.is_some_and(cli::out::is_closed_pipe_panic) {
            std::process::exit(cli::out::CLOSED_STDOUT_STATUS);
        }
        default_hook(info);
    }));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")))
        .init();
    let args = Cli::parse();
    let result = cli::load_config(args.config.as_deref(), args.data_dir.as_deref()).and_then(|config| match args.command {
        Commands::Demo(a) => cli::demo::run(&config, &a),
        Commands::DemoFiles(a) => cli::demo_files::run(&a),
        Commands::Submit(a) => cli::submit::run(&config, &a),
        Commands::Show(a) => cli::show::run(&config, &a),
        Commands::Serve(a) => cli::serve::run(&config, &a),
        Commands::BankConnector(a) => cli::bank::run(&config, &a),
        Commands::Publish(a) => cli::publish::run(&config, &a),
        Commands::Audit(a) => cli::audit::run(&config, &a),
        Commands::Rebuild(a) => cli::audit::rebuild(&config, &a),
        Commands::Api(a) => cli::api::run(&config, &a),
        Commands::Bench(a) => cli::bench::run(&config, &a),
        Commands::Schema { out } => ansinh::schema::write_all(&out)
            .map(|n| ansinh::outln!("wrote {n} schemas to {}", out.display()))
            .map_err(|e| format!("writing schemas to {}: {e}", out.display())),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
