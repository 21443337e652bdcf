//! Who is subscribed to what. Joins add a subscriber, dropping its [`Subscription`] removes it,
//! and the fan-out hands over each commit's broadcasts as one [`Batch`], queued to the
//! subscribers of each topic (one shared broadcast each) — or, for a join that the batch
//! would swamp, replaced by a request to resync. Order subscribers are grouped by filter, so
//! a change is matched once per distinct filter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::phoenix::{Broadcast, Outbox};
use crate::store::Collection;

use super::filter::OrderFilter;
use super::log::ChangeLog;
use super::privacy::Reader;

/// A topic as the fan-out sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKey {
    /// `collection:{name}` for every collection but `order`.
    Collection(Collection),
    /// `collection:menu`.
    Menu,
    /// `collection:order` with one filter.
    Orders(OrderFilter),
    /// `notifications:admin`.
    Admin,
    /// `notifications:user:{id}`.
    User(i64),
}

/// One joined socket.
pub struct Subscriber {
    id: u64,
    pub outbox: Outbox,
    /// Who is on the socket: picks the variant of an order change it gets (SPEC 6).
    reader: Reader,
}

/// The subscriber lists, behind one lock: the fan-out holds it while it queues one broadcast
/// (a non-blocking `try_send` per subscriber), joins and leaves hold it for a push or a remove.
#[derive(Default)]
pub struct Topics {
    groups: HashMap<TopicKey, Vec<Subscriber>>,
    /// The recent change sets, for joins that resume (`since`).
    pub log: ChangeLog,
}

/// The broadcasts of one commit (or of the midnight roll-over), in order, each for one topic.
/// Delivered whole by [`Topics::deliver`], so that each join's share is known before any of
/// it is queued.
#[derive(Default)]
pub struct Batch {
    sends: Vec<(TopicKey, Delivery)>,
}

/// One entry of a batch: the same broadcast for every subscriber, or an order change in two
/// variants — with `customer_id` for admins and that customer, without it for everyone else
/// (SPEC 6). Each variant is built and encoded once, however many sockets get it.
enum Delivery {
    All(Arc<Broadcast>),
    Private {
        full: Arc<Broadcast>,
        redacted: Arc<Broadcast>,
        customer: i64,
    },
}

impl Delivery {
    fn for_reader(&self, reader: Reader) -> &Arc<Broadcast> {
        match self {
            Delivery::All(msg) => msg,
            Delivery::Private { full, customer, .. } if reader.sees(*customer) => full,
            Delivery::Private { redacted, .. } => redacted,
        }
    }
}

impl Batch {
    pub fn push(&mut self, key: TopicKey, msg: Arc<Broadcast>) {
        self.sends.push((key, Delivery::All(msg)));
    }

    /// An order change of `customer`'s: `full` for admins and that customer, `redacted`
    /// (without `customer_id`) for the other subscribers of `key`.
    pub fn push_private(
        &mut self,
        key: TopicKey,
        full: Arc<Broadcast>,
        redacted: Arc<Broadcast>,
        customer: i64,
    ) {
        let delivery = Delivery::Private {
            full,
            redacted,
            customer,
        };
        self.sends.push((key, delivery));
    }
}

/// Whether a join may receive its `n` broadcasts of one batch as they are, when the batch
/// already gives `planned` to the other joins of its socket.
///
/// One batch may give a socket at most half of its queue. The queue is shared by all the
/// socket's joins and may still hold what the client has not read yet; one commit filling it
/// (a bulk `UPDATE` of a thousand orders from the `sqlite3` shell) would close the whole
/// socket with 1013 and drop its other topics. Half leaves the other half for that backlog
/// and for the single changes of the commits that follow while the client catches up. Past
/// that size a resync is also the cheaper way for the client: its rejoin with `since` gets
/// the same changes from the change log in one reply (or a snapshot) instead of hundreds of
/// frames. The current free space is deliberately not consulted: a socket that stopped
/// reading must still fill its queue and be closed with 1013 (SPEC 10), not linger with its
/// joins resynced away.
fn fits(outbox: &Outbox, n: usize, planned: usize) -> bool {
    planned + n <= (outbox.queue_capacity() / 2).max(1)
}

impl Topics {
    /// Queue a batch, in order. A join for which its share of the batch does not [`fits`] is
    /// told to resync instead (`phx_error` for its topic: the client rejoins, with `since`
    /// when it keeps the `seq`) and leaves the topic's list; it gets none of the batch, and
    /// its socket and other joins go on. Returns how many joins were told to resync.
    pub fn deliver(&mut self, seq: u64, batch: &Batch) -> usize {
        let mut per_topic: HashMap<TopicKey, usize> = HashMap::new();
        for (key, _) in &batch.sends {
            *per_topic.entry(*key).or_default() += 1;
        }
        // One broadcast for a topic is never worth a resync: the common commit (one order
        // placed) skips the bookkeeping. The smaller shares go first, so when a socket's
        // joins together are too much, the join with the most changes is the one to resync.
        let mut shares: Vec<(TopicKey, usize)> =
            per_topic.into_iter().filter(|(_, n)| *n > 1).collect();
        shares.sort_unstable_by_key(|(_, n)| *n);
        let mut resynced = 0;
        let mut planned: HashMap<u64, usize> = HashMap::new();
        for (key, n) in shares {
            resynced += self.resync_unless_fits(key, n, &mut planned);
        }
        for (key, msg) in &batch.sends {
            self.send(*key, seq, msg);
        }
        resynced
    }

    /// Tell the subscribers of `key` for whom `n` broadcasts are too many to resync, and drop
    /// them from the list (their socket unjoins them when it sends the `phx_error`).
    fn resync_unless_fits(
        &mut self,
        key: TopicKey,
        n: usize,
        planned: &mut HashMap<u64, usize>,
    ) -> usize {
        let Some(subs) = self.groups.get_mut(&key) else {
            return 0;
        };
        let mut resynced = 0;
        subs.retain(|sub| {
            if sub.outbox.is_closed() {
                return false;
            }
            let planned = planned.entry(sub.outbox.socket_id()).or_default();
            if fits(&sub.outbox, n, *planned) {
                *planned += n;
                return true;
            }
            // One queue slot for the phx_error; with none left the socket closes with 1013.
            sub.outbox.crash();
            *planned += 1;
            resynced += 1;
            false
        });
        if subs.is_empty() {
            self.groups.remove(&key);
        }
        resynced
    }

    /// Queue `msg` to every subscriber of `key`, dropping the ones whose socket is gone.
    fn send(&mut self, key: TopicKey, seq: u64, msg: &Delivery) -> usize {
        let Some(subs) = self.groups.get_mut(&key) else {
            return 0;
        };
        subs.retain(|sub| sub.outbox.broadcast(seq, msg.for_reader(sub.reader)));
        let sent = subs.len();
        if subs.is_empty() {
            self.groups.remove(&key);
        }
        sent
    }

    /// Whether anyone is subscribed to `key` (so a broadcast nobody receives is not built).
    pub fn has_subscribers(&self, key: TopicKey) -> bool {
        self.groups.contains_key(&key)
    }

    /// The order filters that currently have subscribers.
    pub fn order_filters(&self) -> Vec<OrderFilter> {
        self.groups
            .keys()
            .filter_map(|key| match key {
                TopicKey::Orders(filter) => Some(*filter),
                _ => None,
            })
            .collect()
    }

    /// Subscribers per topic kind, for `/metrics`.
    pub fn counts(&self) -> Vec<(String, usize)> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for (key, subs) in &self.groups {
            let name = match key {
                TopicKey::Collection(c) => format!("collection:{}", c.name()),
                TopicKey::Menu => "collection:menu".into(),
                TopicKey::Orders(_) => "collection:order".into(),
                TopicKey::Admin => "notifications:admin".into(),
                TopicKey::User(_) => "notifications:user".into(),
            };
            *counts.entry(name).or_default() += subs.len();
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort();
        counts
    }
}

/// The registry shared by the socket handler (joins) and the fan-out (broadcasts).
#[derive(Default)]
pub struct Registry {
    topics: Mutex<Topics>,
    next_id: AtomicU64,
    /// Broadcasts built by the fan-out (each one message, however many subscribers), for
    /// `/metrics`.
    pub broadcasts: Arc<AtomicU64>,
    /// Joins told to resync because one commit was too big for their queue, for `/metrics`.
    pub resyncs: Arc<AtomicU64>,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Registry::default())
    }

    pub fn lock(&self) -> MutexGuard<'_, Topics> {
        // A panic while holding the lock leaves plain lists behind; keep serving.
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add a subscriber; it stays until the returned guard is dropped.
    pub fn subscribe(self: &Arc<Self>, key: TopicKey, outbox: Outbox) -> Subscription {
        self.subscribe_with(key, outbox, Reader::Public, |_| ()).0
    }

    /// Add a subscriber and, under the same lock, run `f` (to read the change log at exactly
    /// the point where this subscriber starts receiving broadcasts).
    pub fn subscribe_with<R>(
        self: &Arc<Self>,
        key: TopicKey,
        outbox: Outbox,
        reader: Reader,
        f: impl FnOnce(&Topics) -> R,
    ) -> (Subscription, R) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut topics = self.lock();
        topics
            .groups
            .entry(key)
            .or_default()
            .push(Subscriber { id, outbox, reader });
        let result = f(&topics);
        drop(topics);
        let sub = Subscription {
            registry: Arc::clone(self),
            key,
            id,
        };
        (sub, result)
    }
}

/// Keeps one subscriber registered; dropping it (leave, rejoin, socket closed) unsubscribes.
pub struct Subscription {
    registry: Arc<Registry>,
    key: TopicKey,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut topics = self.registry.lock();
        if let Some(subs) = topics.groups.get_mut(&self.key) {
            if let Some(at) = subs.iter().position(|s| s.id == self.id) {
                subs.swap_remove(at);
            }
            if subs.is_empty() {
                topics.groups.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phoenix::outbox::{OutKind, SocketShared};
    use crate::phoenix::Payload;

    /// A socket with a queue of `capacity`, as the registry sees it through its outboxes.
    struct TestSocket {
        shared: Arc<SocketShared>,
    }

    impl TestSocket {
        fn new(id: u64, capacity: usize) -> Self {
            let shared = Arc::new(SocketShared::new(id, capacity));
            TestSocket { shared }
        }

        fn outbox(&self, join: u64) -> Outbox {
            Outbox::new(Arc::clone(&self.shared), join)
        }

        /// What was queued: (join, "broadcast" | "crash") in order.
        fn queued(&mut self) -> Vec<(u64, &'static str)> {
            let mut out = Vec::new();
            while let Some(item) = self.shared.pop() {
                let kind = match item.kind {
                    OutKind::Broadcast(_) => "broadcast",
                    OutKind::Crash => "crash",
                    OutKind::Push(_) => "push",
                };
                out.push((item.join, kind));
            }
            out
        }
    }

    fn batch(sends: &[(TopicKey, usize)]) -> Batch {
        let mut batch = Batch::default();
        for (key, n) in sends {
            for _ in 0..*n {
                let msg = Broadcast::new("t", "change", Payload::Json(serde_json::json!({})));
                batch.push(*key, msg);
            }
        }
        batch
    }

    const MESSAGE: TopicKey = TopicKey::Collection(Collection::Message);
    const STATUS: TopicKey = TopicKey::Collection(Collection::Status);
    const CATEGORY: TopicKey = TopicKey::Collection(Collection::Category);

    #[test]
    fn a_join_given_more_than_half_its_queue_resyncs_and_the_socket_goes_on() {
        let registry = Registry::new();
        let mut small = TestSocket::new(1, 8);
        let mut large = TestSocket::new(2, 16);
        let _m = registry.subscribe(MESSAGE, small.outbox(1));
        let _s = registry.subscribe(STATUS, small.outbox(2));
        let _l = registry.subscribe(MESSAGE, large.outbox(1));

        let resynced = registry
            .lock()
            .deliver(1, &batch(&[(MESSAGE, 5), (STATUS, 1)]));
        assert_eq!(resynced, 1);
        assert_eq!(small.queued(), vec![(1, "crash"), (2, "broadcast")]);
        assert_eq!(large.queued(), vec![(1, "broadcast"); 5]);
        assert_eq!(small.shared.requested_close(), None);

        // The resynced join is off the list: later commits do not reach it.
        registry.lock().deliver(2, &batch(&[(MESSAGE, 1)]));
        assert_eq!(small.queued(), vec![]);
        assert_eq!(large.queued(), vec![(1, "broadcast")]);
    }

    #[test]
    fn joins_of_one_socket_share_half_its_queue_and_the_biggest_share_resyncs() {
        let registry = Registry::new();
        let mut socket = TestSocket::new(1, 8);
        let _m = registry.subscribe(MESSAGE, socket.outbox(1));
        let _c = registry.subscribe(CATEGORY, socket.outbox(2));
        let _s = registry.subscribe(STATUS, socket.outbox(3));
        // 2 + 2 is half of 8; a single status change is not counted.
        let fits = batch(&[(MESSAGE, 2), (CATEGORY, 2), (STATUS, 1)]);
        assert_eq!(registry.lock().deliver(1, &fits), 0);
        assert_eq!(socket.queued().len(), 5);
        // 2 + 3 is more: the message join (3) resyncs, the category join gets its 2.
        let over = batch(&[(MESSAGE, 3), (CATEGORY, 2), (STATUS, 1)]);
        assert_eq!(registry.lock().deliver(2, &over), 1);
        let queued = socket.queued();
        assert_eq!(queued[0], (1, "crash"));
        assert_eq!(
            queued[1..],
            [(2, "broadcast"), (2, "broadcast"), (3, "broadcast")]
        );
        assert_eq!(socket.shared.requested_close(), None);
    }

    #[test]
    fn a_socket_that_stops_reading_still_fills_up_and_closes_with_1013() {
        let registry = Registry::new();
        let socket = TestSocket::new(1, 8);
        let _m = registry.subscribe(MESSAGE, socket.outbox(1));
        for seq in 1..=3 {
            assert_eq!(registry.lock().deliver(seq, &batch(&[(MESSAGE, 3)])), 0);
        }
        assert_eq!(socket.shared.requested_close(), Some(1013));
    }
}
