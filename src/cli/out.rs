//! The CLI's own output on stdout. When whoever reads it goes away (`ansinh show … | head`,
//! `ansinh audit export | less` quit early), the process ends quietly with status 141
//! (128 + SIGPIPE, what a shell shows for a Unix tool killed by SIGPIPE), never with a panic
//! and a backtrace (`println!` panics on a closed stdout: Rust ignores SIGPIPE, so the write
//! fails with EPIPE instead of killing the process). What was decided before is durable: every
//! command an engine executed was flushed before its outcome was printed, and a re-run answers
//! it from the command index.
//!
//! Every line the CLI prints goes through `outln!`/`out!` (or, for byte streams such as the
//! audit export, through [`Stdout`]).

use std::io::{self, Write};

/// Exit status when stdout was closed by its reader.
pub const CLOSED_STDOUT_STATUS: i32 = 141;

/// Ends the process: quietly (status 141) when stdout's reader went away, else with the error.
pub fn failed(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(CLOSED_STDOUT_STATUS);
    }
    let _ = writeln!(io::stderr(), "error: cannot write to stdout: {e}");
    std::process::exit(1);
}

/// Writes `args` (and a newline when `newline`) to stdout; see [`failed`] for what an error does.
pub fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut out = io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| if newline { out.write_all(b"\n") } else { Ok(()) });
    if let Err(e) = written {
        failed(&e);
    }
}

/// stdout as an `io::Write` that ends the process quietly when its reader went away.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stdout().lock().write(buf).inspect_err(check)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        io::stdout().lock().write_all(buf).inspect_err(check)
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stdout().lock().flush().inspect_err(check)
    }
}

fn check(e: &io::Error) {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(CLOSED_STDOUT_STATUS);
    }
}

/// Whether a panic is `print!`'s on a closed pipe (stdout or stderr): the last resort for a
/// write that did not go through this module (an `eprintln!` to a closed stderr).
pub fn is_closed_pipe_panic(message: &str) -> bool {
    message.starts_with("failed printing to std") && message.contains("Broken pipe")
}

/// `println!` for the CLI's output: a closed stdout ends the process quietly.
#[macro_export]
macro_rules! outln {
    () => { $crate::cli::out::write(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::cli::out::write(format_args!($($arg)*), true) };
}

/// `print!` for the CLI's output: a closed stdout ends the process quietly.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::out::write(format_args!($($arg)*), false) };
}
