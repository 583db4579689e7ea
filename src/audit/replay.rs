//! `audit replay --as-of`: the views as they stood at a point of the log, computed from the log
//! alone into a temporary store (the live views are not read).
//!
//! The point is a prefix of the log, never a selection of events:
//! - `--as-of N` (a seq): events 1..=N.
//! - `--as-of T` (an RFC 3339 time): the longest prefix whose events all have `at` <= T,
//!   compared as instants (offsets applied, so `+07:00` and `Z` times compare correctly).
//!   The prefix ends before the first event later than T, even if an event after that one
//!   carries an earlier `at` (commands arrive with their sender's clock): what the views showed
//!   at a moment is what the log held, in log order.
//!
//! The records are checked as they are replayed (`chain::ChainChecker`); a replay of a damaged
//! log stops with the first bad seq instead of showing views built on it.

use super::chain;
use super::scratch::ScratchViews;
use super::source::Source;
use super::time::{parse_rfc3339, Instant};
use super::AuditError;
use std::ops::ControlFlow;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsOf {
    Seq(u64),
    Time { raw: String, instant: Instant },
}

impl AsOf {
    /// Digits only: a seq; otherwise an RFC 3339 time.
    pub fn parse(raw: &str) -> Result<AsOf, String> {
        if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
            return raw.parse().map(AsOf::Seq).map_err(|_| format!("--as-of {raw}: seq too large"));
        }
        parse_rfc3339(raw)
            .map(|instant| AsOf::Time { raw: raw.to_string(), instant })
            .ok_or_else(|| format!("--as-of {raw:?} is neither a seq (e.g. 1200) nor an RFC 3339 time (e.g. 2025-01-31T23:59:59+07:00)"))
    }
}

/// The views after a prefix of the log.
pub struct Replayed {
    pub views: ScratchViews,
    /// Last seq of the prefix (0: no event qualified) and its hash.
    pub seq: u64,
    pub hash: String,
    /// For a time: the first event left out (seq, at), if any.
    pub next: Option<(u64, String)>,
}

pub fn replay(source: &Source, as_of: &AsOf, cache_capacity_bytes: u64, progress: &mut dyn FnMut(u64)) -> Result<Replayed, AuditError> {
    let mut views = ScratchViews::create(cache_capacity_bytes, true)?;
    let (mut seq, mut hash, mut next) = (0, crate::log::chain::GENESIS_HASH.to_string(), None);
    let broken = |f: super::Failure| {
        AuditError::Invalid(format!("the log does not verify ({f}); nothing after it can be replayed: run `ansinh audit verify` for the whole picture"))
    };
    if *as_of == AsOf::Seq(0) {
        return Ok(Replayed { views, seq, hash, next });
    }
    // Break(None): the prefix is complete; Break(Some(e)): stop with an error.
    let scan = chain::scan(source, 1, true, |checked| {
        if let AsOf::Time { instant, .. } = as_of {
            match parse_rfc3339(&checked.event.at) {
                None => {
                    return ControlFlow::Break(Some(AuditError::Invalid(format!(
                        "seq {}: event time {:?} is not RFC 3339; replay --as-of a seq instead",
                        checked.seq, checked.event.at
                    ))))
                }
                Some(at) if at > *instant => {
                    next = Some((checked.seq, checked.event.at.clone()));
                    return ControlFlow::Break(None);
                }
                Some(_) => {}
            }
        }
        (seq, hash) = (checked.seq, checked.hash.clone());
        if let Err(f) = views.push(checked) {
            return ControlFlow::Break(Some(broken(f)));
        }
        if seq % 10_000 == 0 {
            progress(seq);
        }
        match as_of {
            AsOf::Seq(n) if seq >= *n => ControlFlow::Break(None),
            _ => ControlFlow::Continue(()),
        }
    })?;
    match (scan.stopped, scan.failure) {
        (Some(Some(e)), _) => return Err(e),
        (_, Some(f)) => return Err(broken(f)),
        _ => {}
    }
    if let AsOf::Seq(n) = as_of {
        if seq < *n {
            return Err(AuditError::Invalid(format!("--as-of {n} is past the end of the log (last seq {seq})")));
        }
    }
    views.apply_pending().map_err(broken)?;
    progress(seq);
    Ok(Replayed { views, seq, hash, next })
}
