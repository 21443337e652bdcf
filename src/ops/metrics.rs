//! `/metrics` in the Prometheus text format 0.0.4 (SPEC 9): sockets, joined channels by topic,
//! messages and bytes sent, broadcasts, slow sockets closed, joins told to resync, write
//! transactions and their latency, orders created.
//!
//! The figures live where the work happens (the socket endpoint's [`crate::phoenix::Metrics`],
//! the channel registry, the change feed, the writer thread); this module adds the counters
//! the change feed gives, holds [`WriteMetrics`] for the writer to fill, and renders.

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::channels::registry::Registry;
use crate::phoenix;
use crate::store::{ChangeFeed, ChangeSet, Collection, Op};

/// Upper bounds (seconds) of the write latency histogram's buckets: a durable commit on an SD
/// card takes milliseconds; anything near a second is worth seeing.
const WRITE_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Write transactions and their latency, kept by whoever runs them (the store's writer).
#[derive(Debug, Default)]
pub struct WriteMetrics {
    /// Transactions per bucket of [`WRITE_BUCKETS`], plus one past the last (`+Inf`).
    buckets: [AtomicU64; WRITE_BUCKETS.len() + 1],
    count: AtomicU64,
    micros: AtomicU64,
}

impl WriteMetrics {
    /// Record one write transaction that took `elapsed` (from submission to answer: queueing, the transaction, the durable commit).
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = WRITE_BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(WRITE_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    fn histogram(&self) -> Histogram {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(WRITE_BUCKETS.len() + 1);
        for (i, n) in self.buckets.iter().enumerate() {
            cumulative += n.load(Ordering::Relaxed);
            let le = WRITE_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((le, cumulative));
        }
        Histogram {
            buckets,
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// Counters of one running daemon that no other room keeps, taken from the change feed.
#[derive(Debug, Default)]
pub struct Counters {
    /// Committed transactions that reached the channels (the daemon's and other processes').
    pub commits: AtomicU64,
    /// Orders created, by any path (HTTP or the `sqlite3` shell).
    pub orders_created: AtomicU64,
}

impl Counters {
    fn note(&self, set: &ChangeSet) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        let orders = set
            .changes
            .iter()
            .filter(|c| c.collection == Collection::Order && c.op == Op::Create)
            .count();
        self.orders_created
            .fetch_add(orders as u64, Ordering::Relaxed);
    }
}

/// Count every change set on its way from the store to the fan-out. The store's feed goes in,
/// an identical feed comes out, in the same order.
pub fn count_feed(mut feed: ChangeFeed, counters: Arc<Counters>) -> ChangeFeed {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(set) = feed.recv().await {
            counters.note(&set);
            if tx.send(set).is_err() {
                return;
            }
        }
    });
    rx
}

/// What `/metrics` reads for one running daemon, besides the endpoint's own metrics: made by
/// whoever serves (`server::start`) and handed to the HTTP layer with the rest of its `App`.
pub struct Sources {
    /// Joined channels by topic.
    pub registry: Arc<Registry>,
    pub counters: Arc<Counters>,
    /// Write transactions timed where they run, on the writer thread. `None` while the store
    /// keeps no such figures: the family is left out rather than shown as a flat zero.
    pub writes: Option<Arc<WriteMetrics>>,
    /// The writer's commits, group-commit waits and WAL checkpoints; `None` likewise.
    pub writer: Option<Arc<crate::store::writer::WriterCounts>>,
    /// Broadcasts counted where they are made, in the fan-out; `None` likewise.
    pub broadcasts: Option<Arc<AtomicU64>>,
    /// Joins told to resync by the fan-out; `None` likewise.
    pub resyncs: Option<Arc<AtomicU64>>,
    /// The bulk read lane (join snapshots, HTTP lists): reads run, skipped, stopped; `None`
    /// likewise.
    pub snapshots: Option<Arc<crate::store::ReadCounts>>,
    /// The café's clock, for how far the system clock is behind the stored data; `None`
    /// likewise.
    pub clock: Option<Arc<crate::clock::CafeClock>>,
}

impl Sources {
    /// Every figure at this moment, with the socket endpoint's own (`endpoint`).
    pub fn figures(&self, endpoint: &phoenix::Metrics) -> Figures {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.counters;
        Figures {
            open_sockets: load(&endpoint.open_sockets),
            messages_sent: load(&endpoint.messages_sent),
            bytes_sent: load(&endpoint.bytes_sent),
            slow_closed: load(&endpoint.slow_closed),
            waiting_polls: load(&endpoint.waiting_polls),
            joined: self.registry.lock().counts(),
            commits: load(&c.commits),
            orders_created: load(&c.orders_created),
            broadcasts: self.broadcasts.as_deref().map(load),
            resyncs: self.resyncs.as_deref().map(load),
            snapshots: self
                .snapshots
                .as_deref()
                .map(|c| [load(&c.run), load(&c.skipped), load(&c.stopped)]),
            writes: self.writes.as_ref().map(|w| w.histogram()),
            writer: self.writer.as_deref().map(|w| WriterFigures {
                commits: load(&w.commits),
                commit_waits: load(&w.commit_waits),
                checkpoints: load(&w.checkpoints),
                writer_checkpoints: load(&w.writer_checkpoints),
                wakeups: load(&w.wakeups),
                foreign_checks: load(&w.foreign_checks),
            }),
            clock: self
                .clock
                .as_ref()
                .map(|c| (c.behind_seconds(), c.held_total())),
        }
    }
}

/// The writer's own counts (see `store::writer::WriterCounts`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WriterFigures {
    pub commits: u64,
    pub commit_waits: u64,
    pub checkpoints: u64,
    pub writer_checkpoints: u64,
    pub wakeups: u64,
    pub foreign_checks: u64,
}

/// A histogram as rendered: cumulative counts per upper bound.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

/// Every figure `/metrics` shows, read at one moment.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Figures {
    pub open_sockets: u64,
    /// Subscriptions per topic kind (`collection:order`, `notifications:admin`, ...).
    pub joined: Vec<(String, usize)>,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    /// `None`: nobody counts them (the family is left out).
    pub broadcasts: Option<u64>,
    pub slow_closed: u64,
    /// Long polls held open, waiting for frames (clients on the LongPoll fallback).
    pub waiting_polls: u64,
    /// `None`: nobody counts them (the family is left out).
    pub resyncs: Option<u64>,
    /// Bulk reads (snapshots, lists) run, skipped and stopped because their reader had gone;
    /// `None`: nobody counts them (the family is left out).
    pub snapshots: Option<[u64; 3]>,
    pub commits: u64,
    /// `None`: nobody times them (the family is left out).
    pub writes: Option<Histogram>,
    /// `None`: nobody counts them (the families are left out).
    pub writer: Option<WriterFigures>,
    pub orders_created: u64,
    /// Seconds the system clock is behind the newest stored stamp, and how many readings
    /// were held at that stamp; `None`: no café clock (the families are left out).
    pub clock: Option<(u64, u64)>,
}

/// The Prometheus text exposition of `f`.
pub fn render(f: &Figures) -> String {
    let mut out = Text(String::new());
    out.family(
        "kaffediem_build_info",
        "gauge",
        "The running build; the value is always 1.",
    );
    out.sample(
        "kaffediem_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.single(
        "kaffediem_open_sockets",
        "gauge",
        "WebSocket connections open now.",
        f.open_sockets,
    );
    out.family(
        "kaffediem_joined_channels",
        "gauge",
        "Channels joined on open sockets, by topic.",
    );
    for (topic, n) in &f.joined {
        out.sample("kaffediem_joined_channels", &[("topic", topic)], n);
    }
    out.single(
        "kaffediem_messages_sent_total",
        "counter",
        "WebSocket messages sent to clients.",
        f.messages_sent,
    );
    out.single(
        "kaffediem_bytes_sent_total",
        "counter",
        "Bytes of WebSocket messages sent to clients.",
        f.bytes_sent,
    );
    if let Some(broadcasts) = f.broadcasts {
        out.single(
            "kaffediem_broadcasts_total",
            "counter",
            "Broadcasts handed to the channels, each encoded once for all subscribers.",
            broadcasts,
        );
    }
    out.single(
        "kaffediem_slow_sockets_closed_total",
        "counter",
        "Sockets closed because their outbound queue was full (close code 1013).",
        f.slow_closed,
    );
    out.single(
        "kaffediem_long_polls_waiting",
        "gauge",
        "LongPoll requests held open now, waiting for frames for their session.",
        f.waiting_polls,
    );
    if let Some(resyncs) = f.resyncs {
        out.single(
            "kaffediem_resynced_joins_total",
            "counter",
            "Joins sent phx_error to rejoin because one commit changed more of their rows than \
             their queue takes at once (the socket and its other joins stay up).",
            resyncs,
        );
    }
    if let Some([run, skipped, stopped]) = f.snapshots {
        out.family(
            "kaffediem_snapshot_reads_total",
            "counter",
            "Join snapshots and HTTP lists: read (run), skipped because the socket or request \
             had gone before its turn (skipped), stopped midway when it went (stopped).",
        );
        for (outcome, n) in [("run", run), ("skipped", skipped), ("stopped", stopped)] {
            out.sample("kaffediem_snapshot_reads_total", &[("outcome", outcome)], n);
        }
    }
    out.single(
        "kaffediem_commits_total",
        "counter",
        "Committed transactions published to the channels (the daemon's and other processes').",
        f.commits,
    );
    if let Some(writes) = &f.writes {
        out.histogram(
            "kaffediem_write_transaction_seconds",
            "Write transactions on the writer thread and how long each took.",
            writes,
        );
    }
    if let Some(w) = &f.writer {
        out.single(
            "kaffediem_writer_commits_total",
            "counter",
            "Durable commits of the daemon's own writes; one serves every write queued with it.",
            w.commits,
        );
        out.single(
            "kaffediem_writer_commit_waits_total",
            "counter",
            "Commits that waited a moment for the clients the commit before had answered (never \
             after a commit that answered only one).",
            w.commit_waits,
        );
        out.family(
            "kaffediem_wal_checkpoints_total",
            "counter",
            "WAL checkpoints: on the checkpointer's own thread, or by the writer between two \
             commits when unbroken load kept the checkpointer's from completing.",
        );
        for (by, n) in [
            ("checkpointer", w.checkpoints),
            ("writer", w.writer_checkpoints),
        ] {
            out.sample("kaffediem_wal_checkpoints_total", &[("by", by)], n);
        }
        out.single(
            "kaffediem_writer_wakeups_total",
            "counter",
            "Wake-ups of the writer by the watch on the database files (the daemon's own \
             commits change them too; a burst of changes wakes it once).",
            w.wakeups,
        );
        out.single(
            "kaffediem_writer_foreign_checks_total",
            "counter",
            "Looks for other processes' commits (the sqlite3 shell's): before every commit, at \
             a wake-up, shortly after one, and once a second.",
            w.foreign_checks,
        );
    }
    out.single(
        "kaffediem_orders_created_total",
        "counter",
        "Orders created, by any path.",
        f.orders_created,
    );
    if let Some((behind, held)) = f.clock {
        out.single(
            "kaffediem_clock_behind_seconds",
            "gauge",
            "How far the system clock is behind the newest time stamped in the database \
             (0 when it is not); while behind, records are stamped with that newest time.",
            behind,
        );
        out.single(
            "kaffediem_clock_held_total",
            "counter",
            "Clock readings held at the newest stamped time because the system clock was behind it.",
            held,
        );
    }
    out.0
}

struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{label}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        for (le, n) in &h.buckets {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                le.to_string()
            };
            self.sample(&format!("{name}_bucket"), &[("le", &le)], n);
        }
        self.sample(&format!("{name}_sum"), &[], h.sum_seconds);
        self.sample(&format!("{name}_count"), &[], h.count);
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_latency_lands_in_cumulative_buckets() {
        let w = WriteMetrics::default();
        w.observe(Duration::from_micros(300));
        w.observe(Duration::from_millis(3));
        w.observe(Duration::from_secs(10));
        let h = w.histogram();
        assert_eq!(h.count, 3);
        assert_eq!(h.buckets[0], (0.0005, 1));
        assert_eq!(h.buckets[3], (0.005, 2));
        assert_eq!(h.buckets.last(), Some(&(f64::INFINITY, 3)));
        assert!((h.sum_seconds - 10.0033).abs() < 1e-9);
    }

    #[test]
    fn rendering_is_prometheus_text() {
        let figures = Figures {
            open_sockets: 2,
            joined: vec![("collection:order".into(), 3)],
            writes: Some(WriteMetrics::default().histogram()),
            writer: Some(WriterFigures {
                commits: 5,
                checkpoints: 2,
                ..WriterFigures::default()
            }),
            ..Figures::default()
        };
        let text = render(&figures);
        assert!(text.contains("kaffediem_writer_commits_total 5\n"));
        assert!(text.contains("kaffediem_writer_commit_waits_total 0\n"));
        assert!(text.contains("kaffediem_wal_checkpoints_total{by=\"checkpointer\"} 2\n"));
        assert!(text.contains("kaffediem_wal_checkpoints_total{by=\"writer\"} 0\n"));
        assert!(text.contains("kaffediem_writer_foreign_checks_total 0\n"));
        assert!(text.contains("# TYPE kaffediem_open_sockets gauge\nkaffediem_open_sockets 2\n"));
        assert!(text.contains("kaffediem_joined_channels{topic=\"collection:order\"} 3\n"));
        assert!(text.contains("kaffediem_write_transaction_seconds_bucket{le=\"+Inf\"} 0\n"));
        assert!(text.contains("kaffediem_write_transaction_seconds_bucket{le=\"0.0005\"} 0\n"));
        // Every sample line is `name[{labels}] value`, every family has HELP and TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect("name and value");
            assert!(!name.is_empty() && value.parse::<f64>().is_ok(), "{line}");
        }
        assert_eq!(
            text.matches("# HELP ").count(),
            text.matches("# TYPE ").count()
        );
        // Nobody counts broadcasts here: no family rather than a zero that looks like data.
        assert!(!text.contains("kaffediem_broadcasts_total"));
    }
}
