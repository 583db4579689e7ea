//! The command-line shell: argument handling, progress, tables. Everything here may print;
//! nothing here decides anything.

pub mod api;
pub mod audit;
mod audit_national;
pub mod bank;
pub mod bench;
pub mod demo;
pub mod demo_data;
pub mod demo_files;
pub mod out;
pub mod publish;
pub mod serve;
pub mod show;
pub mod submit;

use crate::config::Config;
use crate::engine::{Engine, EngineOptions};
use crate::outln;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;

pub type CliResult = Result<(), String>;

pub fn load_config(path: Option<&Path>, data_dir: Option<&Path>) -> Result<Config, String> {
    let mut config = match path {
        Some(p) => Config::load(p, true),
        None => Config::load(Path::new("config/ansinh.toml"), false),
    }
    .map_err(|e| e.to_string())?;
    if let Some(d) = data_dir {
        config.engine.data_dir = d.to_path_buf();
    }
    Ok(config)
}

/// Opens the engine, showing progress while the state and views catch up with a long log.
pub fn open_engine(options: &EngineOptions) -> Result<Engine, String> {
    let bar = spinner("opening the log");
    let engine = Engine::open(options, &mut |step, n| bar.set_message(format!("replaying the log into {step}: {n} events")));
    bar.finish_and_clear();
    engine.map_err(|e| e.to_string())
}

pub fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_message(message.to_string());
    bar
}

/// A progress bar on stderr; indicatif hides it when stderr is not a terminal.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template("  {msg:<14} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})").expect("template is valid").progress_chars("=> "));
    bar.set_message(what.to_string());
    bar
}

/// A cell as the terminal may show it: the raw input of a refused line is kept as sent, so a
/// control or invisible character (an escape sequence, a bidi override) is printed as its
/// `\u{..}` escape, never sent to the operator's terminal.
pub(crate) fn shown(cell: &str) -> String {
    if !cell.chars().any(crate::domain::text::is_invisible_or_control) {
        return cell.to_string();
    }
    cell.chars().map(|c| if crate::domain::text::is_invisible_or_control(c) { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

/// Prints rows as an aligned table; numeric-looking cells are right-aligned, hidden characters
/// escaped (`shown`).
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows.iter().map(|row| row.iter().map(|cell| shown(cell)).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || matches!(c, ',' | '-' | '.' | '%'));
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i].saturating_sub(c.chars().count());
                if numeric(c) {
                    format!("{}{c}", " ".repeat(pad))
                } else {
                    format!("{c}{}", " ".repeat(pad))
                }
            })
            .collect();
        outln!("  {}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    outln!("  {}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    for row in rows {
        line(row);
    }
}

pub fn vnd(d: rust_decimal::Decimal) -> String {
    crate::domain::money::group_thousands(d)
}

pub fn count(n: u64) -> String {
    crate::domain::money::group_thousands(rust_decimal::Decimal::from(n))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hidden_characters_reach_the_terminal_escaped() {
        assert_eq!(super::shown("056185000123"), "056185000123");
        assert_eq!(super::shown("Nguyễn Thị An"), "Nguyễn Thị An");
        assert_eq!(super::shown("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(super::shown("RED\u{202e}abc\n"), "RED\\u{202e}abc\\u{a}");
    }
}
