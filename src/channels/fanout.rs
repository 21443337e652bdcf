//! The fan-out: consumes the change feed in commit order and turns every [`ChangeSet`] into
//! broadcasts, each built and encoded once and queued to every matching subscriber.
//!
//! An order's change carries the fields filters look at as they were before the commit
//! ([`store::Change::before`], from the change log), so that an update can be compared with
//! the order's previous state (leaving a filter → `delete`, entering it → `create`). The one
//! piece of state it keeps is those fields ([`OrderFacts`]) for the current day's orders, so
//! that the `"today"` window can drop them at local midnight: memory follows one day, not
//! the history.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::SignedDuration;
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::phoenix::{Broadcast, Payload};
use crate::store::menu::Menu;
use crate::store::orders::{OrderFacts, OrderState};
use crate::store::{self, Change, ChangeFeed, ChangeSet, Collection, Op, Store};

use super::filter::{local_date, local_midnight, FromDate};
use super::log::{self, ChangeLog, Logged};
use super::privacy::{self, Reader};
use super::registry::{Batch, Registry, TopicKey, Topics};

/// How long a requested roll-over commit may take before it is asked for again (the writer
/// may have failed it: disk full, say).
const ROLL_OVER_RETRY: Duration = Duration::from_secs(10);

pub struct Fanout {
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
    tz: TimeZone,
    /// Filter fields of the orders inserted since the current day's local midnight, by id:
    /// the ones the midnight roll-over takes off `"today"` screens. (An older order's
    /// previous fields come with its change, [`store::Change::before`], so the history is
    /// never held in memory.)
    orders: HashMap<i64, OrderFacts>,
    /// The local day the `"today"` subscribers are currently on.
    today: Date,
    /// The last commit applied; change sets at or below it are already reflected.
    last_seq: u64,
    /// Commits the midnight roll-over ([`store::Writer::open_day`]), so it gets a `seq`.
    writer: store::Writer,
    /// The day whose roll-over commit was asked for and not yet applied, and when: it is
    /// asked for once, not every tick, and again only if it never came.
    opening: Option<(Date, Instant)>,
}

impl Fanout {
    /// Load the order keys (with the `seq` they reflect) and start at that point, keeping
    /// change sets for `retention` for resuming joins.
    pub async fn load(
        store: &Store,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        tz: TimeZone,
        retention: SignedDuration,
    ) -> Result<Fanout, store::StoreError> {
        let since = local_midnight(local_date(clock.now(), &tz), &tz);
        let (seq, fields) = store
            .snapshot(move |conn| store::records::order_fields(conn, since))
            .await?;
        let orders = fields
            .into_iter()
            .map(|o| {
                let key = OrderFacts {
                    inserted_at: o.inserted_at,
                    customer_id: o.customer_id,
                    state: o.state,
                    day_id: o.day_id,
                };
                (o.id, key)
            })
            .collect();
        let today = local_date(clock.now(), &tz);
        let mut log = ChangeLog::new(seq, retention);
        log.today_from = local_midnight(today, &tz);
        registry.lock().log = log;
        Ok(Fanout {
            registry,
            clock,
            tz,
            orders,
            today,
            last_seq: seq,
            writer: store.writer.clone(),
            opening: None,
        })
    }

    /// Apply change sets until the feed closes (the store shut down), and have the
    /// `"today"` window rolled over at local midnight. The clock is polled every second
    /// rather than slept on until midnight: a Raspberry Pi has no real-time clock and its
    /// time may jump when NTP syncs after boot. (The café's clock never goes back, so
    /// neither does the day.)
    pub async fn run(mut self, mut feed: ChangeFeed) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                set = feed.recv() => match set {
                    Some(set) => self.apply(&set),
                    None => return,
                },
                _ = tick.tick() => self.ask_for_roll_over(),
            }
        }
    }

    /// Publish one committed transaction: log it and queue its broadcasts, all under one
    /// hold of the registry lock, so a join sees either all of it (in its snapshot or log
    /// slice) or none of it (then it arrives as broadcasts — or, when it is more than the
    /// join's queue should take at once, as a request to rejoin, which reads this log).
    pub fn apply(&mut self, set: &ChangeSet) {
        if set.seq <= self.last_seq {
            return;
        }
        self.last_seq = set.seq;
        let registry = Arc::clone(&self.registry);
        let mut topics = registry.lock();
        let mut batch = Batch::default();
        let rolled = set
            .new_day
            .and_then(|day| self.roll_over(&topics, &mut batch, set.seq, day));
        let mut logged = Vec::with_capacity(set.changes.len());
        for change in &set.changes {
            let old_order = if change.collection == Collection::Order {
                self.order_change(&topics, &mut batch, set.seq, change)
            } else {
                let key = TopicKey::Collection(change.collection);
                // The record is copied into the payload only when someone will receive it.
                if topics.has_subscribers(key) {
                    let payload = log::payload(change.op, change, set.seq);
                    let topic = format!("collection:{}", change.collection.name());
                    let msg = broadcast(&self.registry, topic, "change", Payload::Json(payload));
                    batch.push(key, msg);
                }
                None
            };
            logged.push(Logged {
                change: change.clone(),
                old_order,
            });
        }
        if let (Some(menu), true) = (&set.menu, topics.has_subscribers(TopicKey::Menu)) {
            batch.push(
                TopicKey::Menu,
                menu_broadcast(&self.registry, menu, set.seq),
            );
        }
        let resynced = topics.deliver(set.seq, &batch);
        let now = self.clock.now();
        if let Some((from, left)) = rolled {
            let to = local_midnight(self.today, &self.tz);
            topics.log.record_roll_over(set.seq, now, from, to, left);
        } else {
            topics.log.record(set.seq, logged, set.menu.is_some(), now);
        }
        drop(topics);
        if resynced > 0 {
            self.registry
                .resyncs
                .fetch_add(resynced as u64, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                seq = set.seq,
                changes = set.changes.len(),
                joins = resynced,
                "a commit changed more rows than some joins' queues take at once; told them to rejoin"
            );
        }
    }

    /// Add to `batch` one order change for every filter group it concerns, and the
    /// notifications it triggers. Returns the order's filter fields before the change (for
    /// the log).
    fn order_change(
        &mut self,
        topics: &Topics,
        batch: &mut Batch,
        seq: u64,
        change: &Change,
    ) -> Option<OrderFacts> {
        self.orders.remove(&change.id);
        let old = change.before.clone();
        let new = change.record.as_deref().and_then(|r| r.order.clone());
        if let Some(key) = new.as_ref() {
            if key.inserted_at >= local_midnight(self.today, &self.tz) {
                self.orders.insert(change.id, key.clone());
            }
        }
        // The order was new to us when the commit created it, or when we never saw it.
        let old = if change.op == Op::Create { None } else { old };

        // One broadcast per action, built on first need and shared by every filter group;
        // for an order with a customer, two: with `customer_id` for admins and that
        // customer, without it for everyone else (SPEC 6).
        let customer = new.as_ref().and_then(|k| k.customer_id);
        let mut built: [Option<(Arc<Broadcast>, Arc<Broadcast>)>; 3] = [None, None, None];
        for filter in topics.order_filters() {
            let since = filter.since(self.today, &self.tz);
            let was = old.as_ref().is_some_and(|k| filter.matches(k, since));
            let is = new.as_ref().is_some_and(|k| filter.matches(k, since));
            let (op, slot) = match (was, is) {
                (false, true) => (Op::Create, 0),
                (true, true) => (Op::Update, 1),
                (true, false) => (Op::Delete, 2),
                (false, false) => continue,
            };
            let (full, redacted) = built[slot].get_or_insert_with(|| {
                let payload = log::payload(op, change, seq);
                let variant = |payload| {
                    broadcast(
                        &self.registry,
                        "collection:order",
                        "change",
                        Payload::Json(payload),
                    )
                };
                // A delete carries only the id: one variant for everyone.
                if payload
                    .get("record")
                    .and_then(privacy::customer_of)
                    .is_none()
                {
                    let msg = variant(payload);
                    return (Arc::clone(&msg), msg);
                }
                let mut public = payload.clone();
                privacy::redact_change(&mut public, Reader::Public);
                (variant(payload), variant(public))
            });
            let key = TopicKey::Orders(filter);
            match customer {
                Some(customer) if !Arc::ptr_eq(full, redacted) => {
                    batch.push_private(key, Arc::clone(full), Arc::clone(redacted), customer)
                }
                _ => batch.push(key, Arc::clone(full)),
            }
        }

        if let Some(key) = &new {
            let id = change.id;
            let day = key.day_id.map(|d| format!(" #{d}")).unwrap_or_default();
            if change.op == Op::Create && topics.has_subscribers(TopicKey::Admin) {
                let msg = notification(
                    &self.registry,
                    "notifications:admin",
                    "new_order",
                    (id, key.day_id),
                    format!("New order{day}"),
                    key.inserted_at,
                );
                batch.push(TopicKey::Admin, msg);
            }
            let completed = Some(OrderState::Completed);
            let completed_now =
                key.state == completed && old.as_ref().is_none_or(|o| o.state != completed);
            let ready_for = key
                .customer_id
                .filter(|c| completed_now && topics.has_subscribers(TopicKey::User(*c)));
            if let Some(customer) = ready_for {
                let msg = notification(
                    &self.registry,
                    &format!("notifications:user:{customer}"),
                    "order_ready",
                    (id, key.day_id),
                    format!("Order{day} is ready"),
                    self.clock.now(),
                );
                batch.push(TopicKey::User(customer), msg);
            }
        }
        old
    }

    /// Once the café's day has changed, ask the writer for the roll-over commit; its change
    /// set (`new_day`) comes back through the feed and [`Fanout::roll_over`] does the rest.
    fn ask_for_roll_over(&mut self) {
        let day = local_date(self.clock.now(), &self.tz);
        if day <= self.today {
            return;
        }
        if let Some((asked, at)) = self.opening {
            if asked == day && at.elapsed() < ROLL_OVER_RETRY {
                return;
            }
        }
        self.opening = Some((day, Instant::now()));
        let writer = self.writer.clone();
        tokio::spawn(async move {
            if let Err(e) = writer.open_day(day).await {
                tracing::warn!(error = %e, %day, "cannot commit the midnight roll-over; retrying");
            }
        });
    }

    /// The roll-over commit for `day` (seq `seq`): `"today"` subscribers receive `delete`
    /// for every order of the days before that their filter showed, with this commit's `seq`.
    /// Returns where the window started before, and the orders that left it (for the change
    /// log); `None` when `day` is not after the current one (a repeated request).
    fn roll_over(
        &mut self,
        topics: &Topics,
        batch: &mut Batch,
        seq: u64,
        day: Date,
    ) -> Option<(jiff::Timestamp, Vec<(i64, OrderFacts)>)> {
        if day <= self.today {
            return None;
        }
        let previous = std::mem::replace(&mut self.today, day);
        self.opening = None;
        let from = local_midnight(previous, &self.tz);
        let to = local_midnight(day, &self.tz);
        let mut left: Vec<(i64, OrderFacts)> = self
            .orders
            .iter()
            .filter(|(_, k)| k.inserted_at >= from && k.inserted_at < to)
            .map(|(id, k)| (*id, k.clone()))
            .collect();
        left.sort_unstable_by_key(|(id, _)| *id);
        // Only the new day's orders are kept: older ones bring their fields with their change.
        self.orders.retain(|_, k| k.inserted_at >= to);
        // A busy day's deletes are one batch: a screen they would swamp resyncs instead, and
        // its rejoin with `since` replays them from the log.
        for filter in topics.order_filters() {
            if filter.from != FromDate::Today {
                continue;
            }
            for (id, key) in &left {
                if !filter.matches(key, Some(from)) {
                    continue;
                }
                let payload = json!({"action": "delete", "record": {"id": id}, "seq": seq});
                let msg = broadcast(
                    &self.registry,
                    "collection:order",
                    "change",
                    Payload::Json(payload),
                );
                batch.push(TopicKey::Orders(filter), msg);
            }
        }
        Some((from, left))
    }
}

/// The `collection:menu` change of one commit: `{"action":"update","record":<menu>,"seq"}`,
/// with the menu's JSON text shared as is: a 600 KB menu is neither cloned nor re-encoded,
/// only copied once into the frame. Public so the benchmark tool times what the fan-out does.
pub fn menu_broadcast(registry: &Registry, menu: &Menu, seq: u64) -> Arc<Broadcast> {
    let pieces = vec![
        r#"{"action":"update","record":"#.into(),
        Arc::clone(menu.json()),
        format!(r#","seq":{seq}}}"#).into(),
    ];
    broadcast(registry, "collection:menu", "change", Payload::Raw(pieces))
}

/// `{"order_id", "day_id", "message", "timestamp"}` (SPEC 3.3).
fn notification(
    registry: &Registry,
    topic: &str,
    event: &str,
    (order_id, day_id): (i64, Option<i64>),
    message: String,
    at: jiff::Timestamp,
) -> Arc<Broadcast> {
    let payload: Value = json!({
        "order_id": order_id,
        "day_id": day_id,
        "message": message,
        "timestamp": at.to_string(),
    });
    broadcast(registry, topic, event, Payload::Json(payload))
}

/// Build a broadcast, counting it for `/metrics`.
fn broadcast(
    registry: &Registry,
    topic: impl Into<String>,
    event: &str,
    payload: Payload,
) -> Arc<Broadcast> {
    registry
        .broadcasts
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Broadcast::new(topic, event, payload)
}
