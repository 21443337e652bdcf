//! Who is subscribed to what. Joins add a subscriber, dropping its [`Subscription`] removes it,
//! and the fan-out walks the subscribers of a topic to queue one shared broadcast to each.
//! Order subscribers are grouped by filter, so a change is matched once per distinct filter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::phoenix::{Broadcast, Outbox};
use crate::store::Collection;

use super::filter::OrderFilter;
use super::log::ChangeLog;

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
}

/// The subscriber lists, behind one lock: the fan-out holds it while it queues one broadcast
/// (a non-blocking `try_send` per subscriber), joins and leaves hold it for a push or a remove.
#[derive(Default)]
pub struct Topics {
    groups: HashMap<TopicKey, Vec<Subscriber>>,
    /// The recent change sets, for joins that resume (`since`).
    pub log: ChangeLog,
}

impl Topics {
    /// Queue `msg` to every subscriber of `key`, dropping the ones whose socket is gone.
    pub fn send(&mut self, key: TopicKey, seq: u64, msg: &Arc<Broadcast>) -> usize {
        let Some(subs) = self.groups.get_mut(&key) else {
            return 0;
        };
        subs.retain(|sub| sub.outbox.broadcast(seq, msg));
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
        self.subscribe_with(key, outbox, |_| ()).0
    }

    /// Add a subscriber and, under the same lock, run `f` (to read the change log at exactly
    /// the point where this subscriber starts receiving broadcasts).
    pub fn subscribe_with<R>(
        self: &Arc<Self>,
        key: TopicKey,
        outbox: Outbox,
        f: impl FnOnce(&Topics) -> R,
    ) -> (Subscription, R) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut topics = self.lock();
        topics
            .groups
            .entry(key)
            .or_default()
            .push(Subscriber { id, outbox });
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
