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

use super::filter::{FromDate, OrderFilter};
use crate::store::orders::OrderFacts;

/// Beyond this many change sets the oldest are dropped whatever their age, so a burst of
/// writes cannot grow the daemon without bound.
const MAX_ENTRIES: usize = 50_000;

/// One logged row change; order changes also keep the order's filter fields as they were
/// before, so replaying can tell "left the filter" from "never matched".
#[derive(Debug, Clone)]
pub struct Logged {
    pub change: Change,
    pub old_order: Option<OrderFacts>,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    at: Timestamp,
    changes: Vec<Logged>,
    menu_changed: bool,
    /// Where the `"today"` window started when this change set was applied: a resuming
    /// `"today"` join replays each change against the window of its own day.
    today_from: Timestamp,
    /// For the midnight roll-over commit: where the window started before it, and the
    /// orders that left the window then (a `"today"` join resuming from before it gets
    /// their `delete`s).
    rolled_over: Option<(Timestamp, Vec<(i64, OrderFacts)>)>,
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
    /// Where the `"today"` window starts now (local midnight of the fan-out's day); set by
    /// the fan-out at start and moved by every roll-over.
    pub today_from: Timestamp,
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
            today_from: Timestamp::MIN,
        }
    }

    /// Append one applied change set, and forget what is older than the retention.
    pub fn record(&mut self, seq: u64, changes: Vec<Logged>, menu_changed: bool, now: Timestamp) {
        self.push(Entry {
            seq,
            at: now,
            changes,
            menu_changed,
            today_from: self.today_from,
            rolled_over: None,
        });
    }

    /// Append the midnight roll-over commit: the `"today"` window moved from `from` to `to`,
    /// and the orders in `left` left it.
    pub fn record_roll_over(
        &mut self,
        seq: u64,
        now: Timestamp,
        from: Timestamp,
        to: Timestamp,
        left: Vec<(i64, OrderFacts)>,
    ) {
        self.today_from = to;
        self.push(Entry {
            seq,
            at: now,
            changes: Vec::new(),
            menu_changed: false,
            today_from: to,
            rolled_over: Some((from, left)),
        });
    }

    fn push(&mut self, entry: Entry) {
        self.last_seq = entry.seq;
        let now = entry.at;
        self.entries.push_back(entry);
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
                let today = filter.from == FromDate::Today;
                let mut matched: HashMap<i64, bool> = HashMap::new();
                let mut out = Vec::new();
                for entry in after {
                    // A "today" window is the one of the entry's own day.
                    let from = if today { Some(entry.today_from) } else { from };
                    if let (Some((before, left)), true) = (&entry.rolled_over, today) {
                        for (id, key) in left {
                            let was = *matched
                                .entry(*id)
                                .or_insert_with(|| filter.matches(key, Some(*before)));
                            let is = filter.matches(key, from);
                            matched.insert(*id, is);
                            if was && !is {
                                out.push(json!({"action": "delete", "record": {"id": id}, "seq": entry.seq}));
                            }
                        }
                    }
                    replay_orders(filter, from, entry, &mut matched, &mut out);
                }
                Some(out)
            }
        }
    }
}

/// Replay one entry's order changes for `filter` (window from `from`): `create` when an order
/// enters it, `update` while inside, `delete` when it leaves.
fn replay_orders(
    filter: &OrderFilter,
    from: Option<Timestamp>,
    entry: &Entry,
    matched: &mut HashMap<i64, bool>,
    out: &mut Vec<Value>,
) {
    let seq = entry.seq;
    for logged in entry
        .changes
        .iter()
        .filter(|l| l.change.collection == Collection::Order)
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
            .and_then(|r| r.order.as_ref())
            .is_some_and(|k| filter.matches(k, from));
        matched.insert(change.id, is);
        let op = match (was, is) {
            (false, true) => Op::Create,
            (true, true) => Op::Update,
            (true, false) => Op::Delete,
            (false, false) => continue,
        };
        out.push(payload(op, change, seq));
    }
}

/// The `change` payload `{"action", "record", "seq"}`; a delete carries only the id.
pub fn payload(op: Op, change: &Change, seq: u64) -> Value {
    let (action, record) = match (op, &change.record) {
        (Op::Delete, _) | (_, None) => ("delete", json!({"id": change.id})),
        (Op::Create, Some(r)) => ("create", r.json.clone()),
        (Op::Update, Some(r)) => ("update", r.json.clone()),
    };
    json!({"action": action, "record": record, "seq": seq})
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::channels::filter::FromDate;
    use crate::store::records::Record;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn created(id: i64, customer: i64, inserted_at: &str) -> Logged {
        let record = json!({"id": id, "customer_id": customer, "state": "received",
                            "day_id": 101, "inserted_at": inserted_at});
        Logged {
            change: Change {
                collection: Collection::Order,
                id,
                op: Op::Create,
                record: Some(Arc::new(Record::new(Collection::Order, record))),
                before: None,
            },
            old_order: None,
        }
    }

    fn key(customer: i64, inserted_at: &str) -> OrderFacts {
        OrderFacts {
            inserted_at: at(inserted_at),
            customer_id: Some(customer),
            state: Some(crate::store::orders::OrderState::Received),
            day_id: Some(101),
        }
    }

    fn actions(changes: Vec<Value>) -> Vec<(String, i64, u64)> {
        changes
            .iter()
            .map(|c| {
                (
                    c["action"].as_str().unwrap().to_owned(),
                    c["record"]["id"].as_i64().unwrap(),
                    c["seq"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// A "today" join resuming across the roll-over replays each change against the window
    /// of its own day and gets the roll-over's deletes, only for the orders its filter showed.
    #[test]
    fn a_today_resume_replays_the_roll_over() {
        let (day1, day2) = (at("2036-12-01T23:00:00Z"), at("2036-12-02T23:00:00Z"));
        let now = at("2036-12-03T00:00:00Z");
        let mut log = ChangeLog::new(0, SignedDuration::from_hours(48));
        log.today_from = day1;
        log.record(1, vec![created(1, 7, "2036-12-02T08:00:00Z")], false, now);
        log.record(2, vec![created(2, 8, "2036-12-02T09:00:00Z")], false, now);
        let left = vec![
            (1, key(7, "2036-12-02T08:00:00Z")),
            (2, key(8, "2036-12-02T09:00:00Z")),
        ];
        log.record_roll_over(3, now, day1, day2, left);
        log.record(4, vec![created(3, 7, "2036-12-02T23:30:00Z")], false, now);

        let today = OrderFilter {
            from: FromDate::Today,
            customer_id: Some(7),
        };
        let resume = |since, filter: &OrderFilter| {
            let topic = Resume::Orders {
                filter,
                since: Some(day2),
            };
            actions(log.resume(since, topic).expect("answered from the log"))
        };
        let d = |a: &str, id, seq| (a.to_owned(), id, seq);
        assert_eq!(
            resume(0, &today),
            vec![d("create", 1, 1), d("delete", 1, 3), d("create", 3, 4)]
        );
        assert_eq!(
            resume(1, &today),
            vec![d("delete", 1, 3), d("create", 3, 4)]
        );
        assert_eq!(resume(3, &today), vec![d("create", 3, 4)]);
        let all_of_7 = OrderFilter {
            from: FromDate::Any,
            customer_id: Some(7),
        };
        let topic = Resume::Orders {
            filter: &all_of_7,
            since: None,
        };
        assert_eq!(
            actions(log.resume(0, topic).unwrap()),
            vec![d("create", 1, 1), d("create", 3, 4)],
            "a window that does not roll keeps its orders"
        );
    }
}
