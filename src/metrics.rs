//! Prometheus metrics of the engine, the transport and the API, in the text exposition format
//! (version 0.0.4), written by hand: counters, gauges and fixed-bucket histograms on atomics.
//! No metrics crate: what we need is a few hundred lines, and a hand-written renderer keeps the
//! metric names, labels and buckets in one file a reader can check against the dashboards.
//!
//! One `Metrics` is shared (`Arc`) by everything in the process. Recording is lock-free for
//! histograms and gauges; labeled counters take a read lock on the hot path and a write lock
//! only the first time a label set is seen. Label sets are bounded (`SERIES_MAX` per metric):
//! past that, new label sets are counted under `"_other"`, so a flood of odd reason codes
//! cannot grow memory without bound.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Most label sets one labeled metric keeps before folding new ones into `"_other"`.
pub const SERIES_MAX: usize = 1_000;

/// Latency buckets in nanoseconds: 100 µs to 10 s.
const LATENCY_BUCKETS_NS: &[u64] = &[
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];
/// Commands per group commit (bounded by `engine.group_commands_max`, at most 100,000).
const GROUP_COMMANDS_BUCKETS: &[u64] = &[1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 100_000];
/// Events per group commit (a payout batch of 50,000 lines writes about as many events).
const GROUP_EVENTS_BUCKETS: &[u64] = &[1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];
const NS_PER_S: f64 = 1e9;

/// A histogram with fixed upper bounds, in integer units (nanoseconds, or plain counts).
pub struct Histogram {
    bounds: &'static [u64],
    /// One per bound plus the `+Inf` bucket; not cumulative (made cumulative when rendered).
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
    /// Divisor from the integer unit to the rendered unit (1e9 for nanoseconds to seconds);
    /// dividing by a power of ten prints bounds exactly (`0.0001`, not `0.00010000000000000002`).
    divisor: f64,
}

impl Histogram {
    fn new(bounds: &'static [u64], divisor: f64) -> Histogram {
        assert!(bounds.windows(2).all(|w| w[0] < w[1]), "histogram bounds increase");
        Histogram { bounds, counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum: AtomicU64::new(0), divisor }
    }

    pub fn observe(&self, value: u64) {
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}", *bound as f64 / self.divisor);
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}");
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum.load(Ordering::Relaxed) as f64 / self.divisor);
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// Values of a labeled metric, keyed by label values, with a bound on how many label sets exist.
struct Family<T> {
    names: &'static [&'static str],
    series: RwLock<BTreeMap<Vec<String>, Arc<T>>>,
    make: fn() -> T,
}

impl<T> Family<T> {
    fn new(names: &'static [&'static str], make: fn() -> T) -> Family<T> {
        Family { names, series: RwLock::new(BTreeMap::new()), make }
    }

    fn get(&self, values: &[&str]) -> Arc<T> {
        debug_assert_eq!(values.len(), self.names.len(), "one value per label");
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        if let Some(v) = self.series.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return v.clone();
        }
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        let key = if map.len() >= SERIES_MAX && !map.contains_key(&key) { vec!["_other".to_string(); self.names.len()] } else { key };
        map.entry(key).or_insert_with(|| Arc::new((self.make)())).clone()
    }

    /// Rendered label sets (`a="x",b="y"`) with their values, in label order.
    fn each(&self, mut f: impl FnMut(&str, &T)) {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        for (values, v) in map.iter() {
            let labels: Vec<String> = self.names.iter().zip(values).map(|(n, v)| format!("{n}=\"{}\"", escape(v))).collect();
            f(&labels.join(","), v);
        }
    }
}

/// Label values escaped as the text format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Every metric of the process. Share it with `Arc<Metrics>`.
pub struct Metrics {
    started: Instant,
    commands: Family<AtomicU64>,
    dead_lettered: Family<AtomicU64>,
    group_commands: Histogram,
    group_events: Histogram,
    append_seconds: Histogram,
    flush_seconds: Histogram,
    apply_seconds: Histogram,
    head_seq: AtomicU64,
    relay_published_seq: AtomicU64,
    replies_refused: AtomicU64,
    isolated_taken: AtomicU64,
    http_requests: Family<AtomicU64>,
    http_seconds: Family<Histogram>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            started: Instant::now(),
            commands: Family::new(&["type", "status", "code"], || AtomicU64::new(0)),
            dead_lettered: Family::new(&["reason"], || AtomicU64::new(0)),
            group_commands: Histogram::new(GROUP_COMMANDS_BUCKETS, 1.0),
            group_events: Histogram::new(GROUP_EVENTS_BUCKETS, 1.0),
            append_seconds: Histogram::new(LATENCY_BUCKETS_NS, NS_PER_S),
            flush_seconds: Histogram::new(LATENCY_BUCKETS_NS, NS_PER_S),
            apply_seconds: Histogram::new(LATENCY_BUCKETS_NS, NS_PER_S),
            head_seq: AtomicU64::new(0),
            relay_published_seq: AtomicU64::new(0),
            replies_refused: AtomicU64::new(0),
            isolated_taken: AtomicU64::new(0),
            http_requests: Family::new(&["route", "status"], || AtomicU64::new(0)),
            http_seconds: Family::new(&["route"], || Histogram::new(LATENCY_BUCKETS_NS, NS_PER_S)),
        }
    }

    /// One decided command: its type (`submit_payout_batch`), outcome status (`accepted`,
    /// `rejected`, `duplicate`, `invalid`) and reason code (`""` when accepted).
    pub fn command_outcome(&self, command_type: &str, status: &str, code: &str) {
        self.commands.get(&[command_type, status, code]).fetch_add(1, Ordering::Relaxed);
    }

    /// One group commit: how many commands it decided and events it appended.
    pub fn group(&self, commands: usize, events: usize) {
        self.group_commands.observe(commands as u64);
        self.group_events.observe(events as u64);
    }

    /// Time to write a group's atomic batch (before the flush).
    pub fn append_latency(&self, d: Duration) {
        self.append_seconds.observe_duration(d);
    }

    /// Time of the flush that makes a group durable.
    pub fn flush_latency(&self, d: Duration) {
        self.flush_seconds.observe_duration(d);
    }

    /// Time to apply a group's events to the views.
    pub fn apply_latency(&self, d: Duration) {
        self.apply_seconds.observe_duration(d);
    }

    /// The log head after a group commit (the API also refreshes it when scraped).
    pub fn head_seq(&self, seq: u64) {
        self.head_seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// The relay's cursor: every event up to `seq` was confirmed by the broker.
    pub fn relay_published(&self, seq: u64) {
        self.relay_published_seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// A message sent to the dead-letter exchange, by reason (`not_json`, `unknown_type`, ...).
    pub fn dead_lettered(&self, reason: &str) {
        self.dead_lettered.get(&[reason]).fetch_add(1, Ordering::Relaxed);
    }

    /// A command whose `reply_to` is not a reply queue (decided, not answered).
    pub fn reply_refused(&self) {
        self.replies_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A delivery taken from the isolated queue (given back by the command queue too often).
    pub fn isolated(&self) {
        self.isolated_taken.fetch_add(1, Ordering::Relaxed);
    }

    /// One HTTP request answered: its route template (`/v1/citizens/{citizen_id}`, never the
    /// concrete path, which could hold a citizen ID), status and time taken.
    pub fn http_request(&self, route: &str, status: u16, d: Duration) {
        self.http_requests.get(&[route, &status.to_string()]).fetch_add(1, Ordering::Relaxed);
        self.http_seconds.get(&[route]).observe_duration(d);
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let counter = |out: &mut String, name: &str, help: &str, family: &Family<AtomicU64>| {
            header(out, name, "counter", help);
            family.each(|labels, v| {
                let _ = writeln!(out, "{name}{{{labels}}} {}", v.load(Ordering::Relaxed));
            });
        };
        let histogram = |out: &mut String, name: &str, help: &str, h: &Histogram| {
            header(out, name, "histogram", help);
            h.render(out, name, "");
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: String| {
            header(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        };
        counter(&mut out, "ansinh_commands_total", "Commands decided, by type, outcome status and reason code.", &self.commands);
        histogram(&mut out, "ansinh_group_commands", "Commands per group commit.", &self.group_commands);
        histogram(&mut out, "ansinh_group_events", "Events appended per group commit.", &self.group_events);
        histogram(&mut out, "ansinh_append_seconds", "Time to write a group's atomic batch to the log.", &self.append_seconds);
        histogram(&mut out, "ansinh_flush_seconds", "Time of the flush that makes a group durable.", &self.flush_seconds);
        histogram(&mut out, "ansinh_apply_seconds", "Time to apply a group's events to the views.", &self.apply_seconds);
        let head = self.head_seq.load(Ordering::Relaxed);
        let published = self.relay_published_seq.load(Ordering::Relaxed);
        gauge(&mut out, "ansinh_log_head_seq", "Seq of the last durable event.", head.to_string());
        gauge(&mut out, "ansinh_relay_published_seq", "Seq of the last event the broker confirmed to the relay.", published.to_string());
        gauge(
            &mut out,
            "ansinh_relay_lag_events",
            "Events durable but not yet published: head seq - published seq.",
            head.saturating_sub(published).to_string(),
        );
        counter(&mut out, "ansinh_dead_lettered_total", "Messages sent to the dead-letter exchange, by reason.", &self.dead_lettered);
        let plain = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            header(out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        };
        plain(&mut out, "ansinh_replies_refused_total", "Commands decided but not answered: their reply_to was not a reply queue.", &self.replies_refused);
        plain(&mut out, "ansinh_isolated_deliveries_total", "Deliveries taken from the isolated queue, each decided on its own.", &self.isolated_taken);
        counter(&mut out, "ansinh_http_requests_total", "HTTP requests answered, by route template and status.", &self.http_requests);
        header(&mut out, "ansinh_http_request_seconds", "histogram", "Time to answer an HTTP request, by route template.");
        self.http_seconds.each(|labels, h| h.render(&mut out, "ansinh_http_request_seconds", labels));
        gauge(&mut out, "ansinh_uptime_seconds", "Seconds since the process started.", self.started.elapsed().as_secs().to_string());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_histograms_and_lag_render() {
        let m = Metrics::new();
        m.command_outcome("submit_payout_batch", "accepted", "");
        m.command_outcome("submit_payout_batch", "accepted", "");
        m.command_outcome("enroll_beneficiary", "rejected", "already_enrolled");
        m.group(3, 7);
        m.flush_latency(Duration::from_micros(700));
        m.head_seq(120);
        m.relay_published(100);
        m.relay_published(90); // a cursor never moves back
        m.dead_lettered("not_json");
        let text = m.render();
        assert!(text.contains("ansinh_commands_total{type=\"submit_payout_batch\",status=\"accepted\",code=\"\"} 2\n"), "{text}");
        assert!(text.contains("ansinh_commands_total{type=\"enroll_beneficiary\",status=\"rejected\",code=\"already_enrolled\"} 1\n"));
        assert!(text.contains("ansinh_group_commands_bucket{le=\"2\"} 0\n"));
        assert!(text.contains("ansinh_group_commands_bucket{le=\"5\"} 1\n"));
        assert!(text.contains("ansinh_group_commands_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("ansinh_group_events_sum 7\n"));
        assert!(text.contains("ansinh_flush_seconds_bucket{le=\"0.0005\"} 0\n"));
        assert!(text.contains("ansinh_flush_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("ansinh_relay_lag_events 20\n"));
        assert!(text.contains("ansinh_dead_lettered_total{reason=\"not_json\"} 1\n"));
        assert!(text.contains("# TYPE ansinh_flush_seconds histogram\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.dead_lettered("a\"b\\c\nd");
        assert!(m.render().contains("ansinh_dead_lettered_total{reason=\"a\\\"b\\\\c\\nd\"} 1\n"));
    }

    #[test]
    fn label_sets_are_bounded() {
        let m = Metrics::new();
        for i in 0..SERIES_MAX + 10 {
            m.dead_lettered(&format!("reason-{i}"));
        }
        let text = m.render();
        assert_eq!(text.lines().filter(|l| l.starts_with("ansinh_dead_lettered_total{")).count(), SERIES_MAX + 1);
        assert!(text.contains("ansinh_dead_lettered_total{reason=\"_other\"} 10\n"));
    }

    #[test]
    fn http_histograms_are_labeled_by_route() {
        let m = Metrics::new();
        m.http_request("/v1/citizens/{citizen_id}", 200, Duration::from_millis(2));
        let text = m.render();
        assert!(text.contains("ansinh_http_requests_total{route=\"/v1/citizens/{citizen_id}\",status=\"200\"} 1\n"));
        assert!(text.contains("ansinh_http_request_seconds_bucket{route=\"/v1/citizens/{citizen_id}\",le=\"0.0025\"} 1\n"));
        assert!(text.contains("ansinh_http_request_seconds_count{route=\"/v1/citizens/{citizen_id}\"} 1\n"));
    }
}
