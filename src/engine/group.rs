//! A group of commands, in two stages: `decide` (the command index consulted, each command
//! decided against the state plus the group's own earlier events, evolved, sealed) and `store`
//! (one atomic append, the fsync that makes it durable, the views). The stages run on two
//! threads when groups come one after another (`Engine::execute_pipelined`): the next group is
//! decided while the previous one is written and fsynced. Nothing is answered before its own
//! group is durable.

use super::{check_envelope, digest, EngineError, GroupStats};
use crate::command::CommandEnvelope;
use crate::core::{decide, Rejection, State};
use crate::event::{CommandRejected, Event, EventData};
use crate::log::chain::seal;
use crate::log::segment::{RecordMeta, SealedRecord};
use crate::log::{command_key, parse_event, reuse_key, CommandEntry, Group, Head, LogError, LogReader};
use crate::outcome::Outcome;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// A group decided and sealed, ready to store.
pub(crate) struct Decided {
    pub group: Group,
    /// Shared with `InFlight` until stored.
    pub events: Arc<Vec<(u64, Event)>>,
    pub outcomes: Vec<Outcome>,
    pub stats: GroupStats,
}

/// (last seq, index keys, events) of a group decided and not stored yet.
type InFlightGroup = (u64, Vec<Vec<u8>>, Arc<Vec<(u64, Event)>>);

/// What the deciding side knows of groups it decided that are not stored yet: their index
/// entries and events (a redelivery in the next group is answered from them), oldest first.
#[derive(Default)]
pub(crate) struct InFlight {
    index: HashMap<Vec<u8>, CommandEntry>,
    /// Each group in flight, oldest first.
    groups: VecDeque<InFlightGroup>,
}

impl InFlight {
    fn add(&mut self, decided: &Decided) {
        let Some(head) = &decided.group.head else { return };
        let keys: Vec<Vec<u8>> = decided.group.commands.iter().chain(&decided.group.reuses).map(|(k, _)| k.clone()).collect();
        for (k, e) in decided.group.commands.iter().chain(&decided.group.reuses) {
            self.index.insert(k.clone(), e.clone());
        }
        self.groups.push_back((head.seq, keys, Arc::clone(&decided.events)));
    }

    /// Forgets the groups stored up to `seq`: the log answers for them now.
    pub fn retire(&mut self, seq: u64) {
        while self.groups.front().is_some_and(|(last, _, _)| *last <= seq) {
            let (_, keys, _) = self.groups.pop_front().expect("checked just above");
            for k in keys {
                self.index.remove(&k);
            }
        }
    }
}

/// What deciding reads and changes: the state, where the log ends (decided, maybe not yet
/// stored), the index as stored plus what is in flight.
pub(crate) struct Decider<'a> {
    pub state: &'a mut State,
    pub roles: Option<&'a crate::core::authz::Roles>,
    pub index: &'a LogReader,
    pub tip: &'a mut Head,
    pub in_flight: &'a mut InFlight,
}

impl Decider<'_> {
    fn entry(&self, pending: &HashMap<Vec<u8>, CommandEntry>, key: &[u8]) -> Result<Option<CommandEntry>, LogError> {
        match pending.get(key).or_else(|| self.in_flight.index.get(key)) {
            Some(e) => Ok(Some(e.clone())),
            None => self.index.entry(key),
        }
    }

    /// The events a command wrote: from this group, a group in flight, or the log.
    fn events_of(&self, entry: &CommandEntry, this_group: &[(u64, Event)]) -> Result<Vec<(u64, Event)>, LogError> {
        let wanted = |s: &u64| (entry.first_seq..=entry.last_seq).contains(s);
        let in_flight = self.in_flight.groups.iter().flat_map(|(_, _, events)| events.iter());
        let here: Vec<(u64, Event)> = this_group.iter().chain(in_flight).filter(|(s, _)| wanted(s)).cloned().collect();
        if !here.is_empty() {
            return Ok(here);
        }
        self.index.range(entry.first_seq, entry.last_seq).map(|item| item.and_then(|(seq, bytes)| parse_event(seq, &bytes).map(|e| (seq, e)))).collect()
    }

    /// Decides a group: outcomes in input order, the sealed records and index entries to append.
    /// An error (a failed read of the index) can come after earlier commands were evolved into
    /// the state: the caller must then poison the engine.
    pub fn decide(&mut self, commands: &[CommandEnvelope]) -> Result<Decided, LogError> {
        let started = Instant::now();
        let mut seq = self.tip.seq;
        let mut prev_hash = self.tip.hash.clone();
        let mut group = Group::default();
        let mut events: Vec<(u64, Event)> = Vec::new();
        // Index entries of commands decided earlier in this group.
        let mut pending: HashMap<Vec<u8>, CommandEntry> = HashMap::new();
        let mut outcomes = Vec::with_capacity(commands.len());

        for envelope in commands {
            let issued_at = match check_envelope(envelope) {
                Ok(issued_at) => issued_at,
                Err(why) => {
                    outcomes.push(Outcome::invalid(&envelope.command_id, envelope.command.type_name(), why));
                    continue;
                }
            };
            let id = envelope.command_id.as_str();
            let sender = envelope.sender.as_deref();
            let digest = digest(envelope);
            let key = command_key(id, sender);
            let known = self.entry(&pending, &key)?;
            let reuse = reuse_key(id, &digest);
            let decided = match &known {
                Some(entry) if entry.digest == digest => Some(entry.clone()),
                Some(_) => self.entry(&pending, &reuse)?,
                None => None,
            };
            if let Some(entry) = decided {
                let past = self.events_of(&entry, &events)?;
                outcomes.push(Outcome::from_events(id, envelope.command.type_name(), &past, true));
                continue;
            }
            let result = if known.is_some() {
                Err(Rejection::new("command_id_reused", format!("command id {id:?} was already used with a different payload")))
            } else if envelope.v != 1 {
                Err(Rejection::new(
                    "version_unsupported",
                    format!("{} version {} is not supported (this engine reads version 1)", envelope.command.type_name(), envelope.v),
                ))
            } else if let Some(roles) = self.roles {
                crate::core::authz::authorize(roles, self.state, sender, &envelope.command).and_then(|()| decide(self.state, &envelope.command, &issued_at))
            } else {
                decide(self.state, &envelope.command, &issued_at)
            };
            let data = result.unwrap_or_else(|r| {
                tracing::debug!(command_id = %crate::domain::citizen_id::log_safe(id), code = r.code, "command rejected");
                vec![EventData::CommandRejected(CommandRejected { command_type: envelope.command.type_name().into(), code: r.code.into(), message: r.message })]
            });
            let first = seq + 1;
            let start = events.len();
            let ids = EventIds::new(id, known.is_some().then_some(digest.as_str()), sender);
            for (n, data) in data.into_iter().enumerate() {
                self.state.evolve(&data);
                seq += 1;
                let event =
                    Event { id: ids.id(n + 1), command_id: id.to_string(), at: envelope.issued_at.clone(), sender: envelope.sender.clone(), v: 1, data };
                let (bytes, hash) = seal(seq, &prev_hash, &event);
                prev_hash = hash;
                group.records.push(SealedRecord { seq, bytes, meta: RecordMeta::of(&event) });
                events.push((seq, event));
            }
            let entry = CommandEntry { digest, first_seq: first, last_seq: seq };
            outcomes.push(Outcome::from_events(id, envelope.command.type_name(), &events[start..], false));
            let key = if known.is_some() { reuse } else { key };
            pending.insert(key.clone(), entry.clone());
            if known.is_some() {
                group.reuses.push((key, entry));
            } else {
                group.commands.push((key, entry));
            }
        }
        let stats = GroupStats { commands: commands.len(), events: events.len(), decide: started.elapsed(), ..GroupStats::default() };
        if !events.is_empty() {
            let head = Head { seq, hash: prev_hash };
            *self.tip = head.clone();
            group.head = Some(head);
        }
        let decided = Decided { group, events: Arc::new(events), outcomes, stats };
        self.in_flight.add(&decided);
        Ok(decided)
    }
}

/// Event ids, unique in the log: `<command_id>/<n>`, and for a `command_id_reused` rejection
/// `<command_id>/reused-<16 hex of its payload digest>/<n>`; a command with a sender (every
/// command but an AMQP message without a user id) adds `@<sender>`. Command ids are scoped by
/// sender, so two senders may each send a command `x`; the part before the first `@` (which no
/// command id holds) is the id as it was, the rest the sender.
struct EventIds {
    prefix: String,
    suffix: String,
}

impl EventIds {
    fn new(command_id: &str, reused_digest: Option<&str>, sender: Option<&str>) -> EventIds {
        let prefix = match reused_digest {
            Some(d) => format!("{command_id}/reused-{}", &d[..16]),
            None => command_id.to_string(),
        };
        EventIds { prefix, suffix: sender.map(|s| format!("@{s}")).unwrap_or_default() }
    }

    fn id(&self, n: usize) -> String {
        format!("{}/{n}{}", self.prefix, self.suffix)
    }
}

/// The storing side: the log, the views, what makes a group durable.
pub(crate) struct Store<'a> {
    pub log: &'a mut crate::log::Log,
    pub views: &'a mut crate::projection::Views,
    pub db: &'a sled::Db,
    pub data_file: &'a std::fs::File,
    pub checkpoint_every_events: u64,
}

impl Store<'_> {
    /// Appends the group in one atomic batch, flushes and fsyncs it, records a checkpoint when
    /// one is due, applies the views. Returns the outcomes once the group is durable (and its
    /// views applied: a reader who was answered reads its own writes).
    pub fn store(&mut self, decided: Decided) -> Result<(Vec<Outcome>, GroupStats), EngineError> {
        let Decided { group, events, outcomes, mut stats } = decided;
        if events.is_empty() {
            return Ok((outcomes, stats));
        }
        let t = self.log.append(group)?;
        let fsync = super::fsync(self.data_file)?;
        (stats.append, stats.flush) = (t.write, t.flush + fsync);
        crate::audit::checkpoint::after_append(self.db, self.log.head(), events.len() as u64, self.checkpoint_every_events);
        let applying = Instant::now();
        let applied = self.views.apply(&events);
        stats.apply = applying.elapsed();
        // On an error the group is durable all the same; the views catch up from the log when
        // the engine is reopened.
        applied?;
        tracing::debug!(last_seq = self.log.head().seq, events = events.len(), "group committed");
        Ok((outcomes, stats))
    }
}
