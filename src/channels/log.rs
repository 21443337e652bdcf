//! The retained change log (SPEC 3.1 "Resume"): the change sets of the last hours, kept in
//! memory by the fan-out so that a client that lost its connection can rejoin with
//! `{"since": seq}` and receive exactly the changes it missed instead of a full snapshot.
//!
//! It lives beside the subscriber lists, under the same lock, so that a resuming join
//! registers and reads the log at one point of the commit order: changes after that point
//! reach it as broadcasts, changes before it come from the log, none twice.
//!
//! After a restart the log starts empty: a resume then gets the full snapshot, as the spec
//! allows ("the ordinary full snapshot otherwise").

use std::collections::{HashMap, VecDeque};

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use crate::store::{Change, Collection, Op};

use super::filter::{FromDate, OrderFilter, OrderKey};

/// Beyond this many change sets the oldest are dropped whatever their age, so a burst of
/// writes cannot grow the daemon without bound.
const MAX_ENTRIES: usize = 50_000;

/// One logged row change; order changes also keep the order's filter fields as they were
/// before, so replaying can tell "left the filter" from "never matched".
#[derive(Debug, Clone)]
pub struct Logged {
    pub change: Change,
    pub old_order: Option<OrderKey>,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    at: Timestamp,
    changes: Vec<Logged>,
    menu_changed: bool,
}

/// What a topic resumes from the log.
pub enum Resume<'a> {
    Collection(Collection),
    Menu,
    Orders {
        filter: &'a OrderFilter,
        since: Option<Timestamp>,
    },
}

#[derive(Debug)]
pub struct ChangeLog {
    entries: VecDeque<Entry>,
    retention: SignedDuration,
    /// Every change set with a `seq` in `(floor, last_seq]` is in `entries`.
    floor: u64,
    pub last_seq: u64,
    /// `last_seq` when the `"today"` window last rolled over at midnight: a `"today"`
    /// subscriber resuming from before it would miss that roll-over's deletes.
    pub rollover_seq: u64,
}

impl Default for ChangeLog {
    fn default() -> Self {
        ChangeLog::new(0, SignedDuration::from_hours(24))
    }
}

impl ChangeLog {
    /// An empty log positioned at `seq`, keeping change sets for `retention`.
    pub fn new(seq: u64, retention: SignedDuration) -> Self {
        ChangeLog {
            entries: VecDeque::new(),
            retention,
            floor: seq,
            last_seq: seq,
            rollover_seq: 0,
        }
    }

    /// Append one applied change set, and forget what is older than the retention.
    pub fn record(&mut self, seq: u64, changes: Vec<Logged>, menu_changed: bool, now: Timestamp) {
        self.last_seq = seq;
        self.entries.push_back(Entry {
            seq,
            at: now,
            changes,
            menu_changed,
        });
        let oldest_kept = now.checked_sub(self.retention).unwrap_or(Timestamp::MIN);
        while let Some(first) = self.entries.front() {
            if first.at >= oldest_kept && self.entries.len() <= MAX_ENTRIES {
                break;
            }
            self.floor = first.seq;
            self.entries.pop_front();
        }
    }

    /// The change payloads after `since` for `topic`, in commit order, or `None` when the log
    /// no longer holds them all (or cannot answer for this topic: then send a snapshot).
    pub fn resume(&self, since: u64, topic: Resume<'_>) -> Option<Vec<Value>> {
        if since < self.floor || since > self.last_seq {
            return None;
        }
        let after = self.entries.iter().filter(|e| e.seq > since);
        match topic {
            Resume::Menu => {
                // The menu is re-sent whole on every change: one fresh snapshot is all a
                // client needs, and the log does not keep old menus.
                if after.clone().any(|e| e.menu_changed) {
                    None
                } else {
                    Some(Vec::new())
                }
            }
            Resume::Collection(collection) => Some(
                after
                    .flat_map(|e| e.changes.iter().map(move |l| (e.seq, l)))
                    .filter(|(_, l)| l.change.collection == collection)
                    .map(|(seq, l)| payload(l.change.op, &l.change, seq))
                    .collect(),
            ),
            Resume::Orders {
                filter,
                since: from,
            } => {
                if filter.from == FromDate::Today && since <= self.rollover_seq {
                    return None;
                }
                let mut matched: HashMap<i64, bool> = HashMap::new();
                let mut out = Vec::new();
                for (seq, logged) in after
                    .flat_map(|e| e.changes.iter().map(move |l| (e.seq, l)))
                    .filter(|(_, l)| l.change.collection == Collection::Order)
                {
                    let change = &logged.change;
                    let was = *matched.entry(change.id).or_insert_with(|| {
                        logged
                            .old_order
                            .as_ref()
                            .is_some_and(|k| filter.matches(k, from))
                    });
                    let is = change
                        .record
                        .as_deref()
                        .and_then(OrderKey::from_record)
                        .is_some_and(|k| filter.matches(&k, from));
                    matched.insert(change.id, is);
                    let op = match (was, is) {
                        (false, true) => Op::Create,
                        (true, true) => Op::Update,
                        (true, false) => Op::Delete,
                        (false, false) => continue,
                    };
                    out.push(payload(op, change, seq));
                }
                Some(out)
            }
        }
    }
}

/// The `change` payload `{"action", "record", "seq"}`; a delete carries only the id.
pub fn payload(op: Op, change: &Change, seq: u64) -> Value {
    let (action, record) = match (op, &change.record) {
        (Op::Delete, _) | (_, None) => ("delete", json!({"id": change.id})),
        (Op::Create, Some(r)) => ("create", (**r).clone()),
        (Op::Update, Some(r)) => ("update", (**r).clone()),
    };
    json!({"action": action, "record": record, "seq": seq})
}
