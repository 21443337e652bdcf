//! The hostile phase's probes, all from 127.0.0.1: `GET /healthz` and a logged-in customer's
//! order every 50 ms, the daemon's `VmRSS` every 20 ms. A probe is sent on every tick even
//! while earlier ones are unanswered (up to 16 in flight, each on its own keep-alive
//! connection), so a stalled daemon shows as slow and failed probes in the phase it stalled
//! in, not as a gap. Samples go to the phase current when the probe was sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::orders;
use crate::process;

/// Probe cadence: one `/healthz` and one order every 50 ms.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// A probe not answered within this counts as failed (at this time).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Probes of one kind in flight at most (their connections stay well below the daemon's
/// per-address limit, so the probes never attack the daemon themselves).
const IN_FLIGHT: usize = 16;
/// `VmRSS` sampling interval.
pub const RSS_EVERY: Duration = Duration::from_millis(20);
/// The phase slot of samples taken between phases (dropped).
pub const NO_PHASE: usize = usize::MAX;

/// What the probes saw in one phase.
#[derive(Default)]
pub struct Samples {
    pub healthz: Vec<u64>,
    /// Failed, timed out, or not sent because 16 were already unanswered.
    pub healthz_failed: u64,
    pub acks: Vec<u64>,
    pub orders_failed: u64,
    /// Tracker slots of the orders acknowledged in the phase.
    pub placed: Vec<usize>,
}

/// Shared between the probe tasks and the phase loop.
pub struct Probes {
    /// The phase samples go to (`NO_PHASE` between phases).
    pub phase: AtomicUsize,
    per_phase: Mutex<Vec<Samples>>,
    /// Probes sent in each phase and not yet counted.
    in_flight: Vec<AtomicUsize>,
    /// Largest `VmRSS` since the phase began, in KiB.
    pub rss_max: AtomicU64,
    pub rss_samples: AtomicU64,
    /// `VmRSS` passed the cap: the phase loop stops the attack.
    pub over_cap: AtomicBool,
    /// Tracker slot of the next probe order (orders are numbered across daemon restarts).
    next_order: AtomicUsize,
}

impl Probes {
    pub fn new(phases: usize) -> Probes {
        Probes {
            phase: AtomicUsize::new(NO_PHASE),
            per_phase: Mutex::new((0..phases).map(|_| Samples::default()).collect()),
            in_flight: (0..phases).map(|_| AtomicUsize::new(0)).collect(),
            rss_max: AtomicU64::new(0),
            rss_samples: AtomicU64::new(0),
            over_cap: AtomicBool::new(false),
            next_order: AtomicUsize::new(0),
        }
    }

    fn record(&self, phase: usize, f: impl FnOnce(&mut Samples)) {
        if let Ok(mut all) = self.per_phase.lock() {
            if let Some(s) = all.get_mut(phase) {
                f(s);
            }
        }
    }

    /// Everything phase `phase` collected, once its last probe is counted (bounded by the
    /// probes' own timeout).
    pub async fn take(&self, phase: usize) -> Samples {
        let deadline = Instant::now() + PROBE_TIMEOUT + Duration::from_secs(1);
        while self
            .in_flight
            .get(phase)
            .is_some_and(|n| n.load(Ordering::Relaxed) > 0)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.per_phase
            .lock()
            .ok()
            .and_then(|mut all| all.get_mut(phase).map(std::mem::take))
            .unwrap_or_default()
    }
}

/// Counts a probe in flight for its phase until dropped (also when its task is aborted).
struct Flying<'a>(Option<&'a AtomicUsize>);

impl<'a> Flying<'a> {
    fn new(probes: &'a Probes, phase: usize) -> Flying<'a> {
        let counter = probes.in_flight.get(phase);
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        Flying(counter)
    }
}

impl Drop for Flying<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Idle keep-alive connections of one probe kind.
#[derive(Default)]
struct Pool(Mutex<Vec<BufReader<TcpStream>>>);

impl Pool {
    fn take(&self) -> Option<BufReader<TcpStream>> {
        self.0.lock().ok().and_then(|mut idle| idle.pop())
    }

    fn give_back(&self, conn: BufReader<TcpStream>) {
        if let Ok(mut idle) = self.0.lock() {
            idle.push(conn);
        }
    }
}

/// One probe request, and where its answer goes.
struct Ask {
    path: &'static str,
    headers: Arc<str>,
    /// Empty for a GET.
    body: String,
    /// The status of a probe that succeeded.
    wanted: u16,
    record: Record,
}

/// Records a probe's answer in its phase's samples: whether it was `wanted`, and how long it
/// took (ns).
type Record = Box<dyn FnOnce(&mut Samples, bool, u64) + Send + Sync>;

/// One probe request: on a pooled connection (or a new one), within `PROBE_TIMEOUT`.
/// Returns whether `ask.wanted` came back, and how long it took.
async fn send(pool: &Pool, addr: SocketAddr, ask: &Ask) -> (bool, u64) {
    let sent = Instant::now();
    let method = if ask.body.is_empty() { "GET" } else { "POST" };
    let asked = async {
        let mut conn = match pool.take() {
            Some(c) => c,
            None => BufReader::new(orders::connect(addr).await?),
        };
        let reply =
            orders::exchange(&mut conn, addr, method, ask.path, &ask.headers, &ask.body).await?;
        Ok::<_, String>((reply.status, conn))
    };
    let ok = match tokio::time::timeout(PROBE_TIMEOUT, asked).await {
        Ok(Ok((status, conn))) if status == ask.wanted => {
            pool.give_back(conn);
            true
        }
        _ => false,
    };
    (ok, sent.elapsed().as_nanos() as u64)
}

/// A probe on every 50 ms tick, up to `IN_FLIGHT` unanswered: a tick with no room counts in
/// `refused`; otherwise `next` gives the tick's request, or `None` to stop probing.
async fn every_tick(
    addr: SocketAddr,
    probes: Arc<Probes>,
    refused: fn(&mut Samples),
    mut next: impl FnMut() -> Option<Ask>,
) {
    let (pool, gate) = (
        Arc::new(Pool::default()),
        Arc::new(Semaphore::new(IN_FLIGHT)),
    );
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flying = JoinSet::new();
    loop {
        every.tick().await;
        while flying.try_join_next().is_some() {}
        let phase = probes.phase.load(Ordering::Relaxed);
        let Ok(permit) = Arc::clone(&gate).try_acquire_owned() else {
            probes.record(phase, refused);
            continue;
        };
        let Some(ask) = next() else {
            return;
        };
        let (pool, probes) = (Arc::clone(&pool), Arc::clone(&probes));
        flying.spawn(async move {
            let _permit = permit;
            let _counted = Flying::new(&probes, phase);
            let (ok, took) = send(&pool, addr, &ask).await;
            probes.record(phase, |s| (ask.record)(s, ok, took));
        });
    }
}

/// `GET /healthz` every 50 ms.
pub async fn healthz(addr: SocketAddr, probes: Arc<Probes>) {
    let no_headers: Arc<str> = "".into();
    every_tick(
        addr,
        probes,
        |s| s.healthz_failed += 1,
        || {
            Some(Ask {
                path: "/healthz",
                headers: Arc::clone(&no_headers),
                body: String::new(),
                wanted: 200,
                record: Box::new(|s, ok, took| {
                    s.healthz.push(took);
                    s.healthz_failed += u64::from(!ok);
                }),
            })
        },
    )
    .await;
}

/// The logged-in customer (`cookie`) places an order of `item` every 50 ms; each order's
/// uuid is `prefix` and its tracker slot, so the screen can count it.
pub async fn orders(
    addr: SocketAddr,
    cookie: String,
    item: i64,
    prefix: String,
    capacity: usize,
    probes: Arc<Probes>,
) {
    let headers: Arc<str> = format!("Cookie: {cookie}\r\n").into();
    let slots = Arc::clone(&probes);
    every_tick(
        addr,
        probes,
        |s| s.orders_failed += 1,
        || {
            let i = slots.next_order.fetch_add(1, Ordering::Relaxed);
            if i >= capacity {
                return None;
            }
            Some(Ask {
                path: "/api/collections/order/records",
                headers: Arc::clone(&headers),
                body: format!(
                    r#"{{"items":[{{"item":{item},"customizations":[]}}],"state":"received","missing_information":false,"uuid":"{prefix}{i}"}}"#
                ),
                wanted: 201,
                record: Box::new(move |s, ok, took| {
                    s.acks.push(took);
                    if ok {
                        s.placed.push(i);
                    } else {
                        s.orders_failed += 1;
                    }
                }),
            })
        },
    )
    .await;
}

/// The daemon's `VmRSS` every 20 ms: the phase's peak, and the safety cap.
pub async fn rss(pid: u32, probes: Arc<Probes>, cap_kib: u64) {
    let mut every = tokio::time::interval(RSS_EVERY);
    loop {
        every.tick().await;
        let Some(rss) = process::rss_of(pid) else {
            continue;
        };
        probes.rss_max.fetch_max(rss.now_kib, Ordering::Relaxed);
        probes.rss_samples.fetch_add(1, Ordering::Relaxed);
        if rss.now_kib > cap_kib {
            probes.over_cap.store(true, Ordering::Relaxed);
        }
    }
}

/// Seconds until a `/healthz` on a fresh connection is answered (`None`: not within `max`).
pub async fn recovery(addr: SocketAddr, max: Duration) -> Option<f64> {
    let started = Instant::now();
    while started.elapsed() < max {
        let asked = async {
            let mut c = BufReader::new(orders::connect(addr).await?);
            orders::request(&mut c, addr, "GET", "/healthz", "", "").await
        };
        if let Ok(Ok((200, _))) = tokio::time::timeout(Duration::from_secs(1), asked).await {
            return Some(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
