//! The hostile phase (issue 10): the daemon with its default limits, a database holding
//! thousands of orders, and probes from 127.0.0.1 — `/healthz` every 50 ms, a logged-in
//! customer placing an order every 50 ms, a screen on `collection:order` counting those
//! orders' deliveries, the daemon's `VmRSS` sampled every 20 ms — first quiet, then during
//! each attack from 127.0.0.2 in turn (`attacks`). Every attack is bounded in time and count;
//! the budget is judged in the report (`hostile_report`), never asserted.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::ValueEnum;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use kaffediem::clock::SystemClock;
use kaffediem::store::{RecordCtx, Store, StoreError, StoreOptions};

use crate::attacks::{self, BigOrder, Outcomes, ATTACKER};
use crate::hostile_report::{HostileRun, PhaseRun, RSS_BUDGET_KIB};
use crate::orders;
use crate::process::{self, DaemonSpec, Server};
use crate::report::Stats;
use crate::subscribers::{self, Stream, Tracker};

/// Probe cadence: one `/healthz` and one order every 50 ms.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// A probe not answered within this counts as failed (at this time).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// `VmRSS` sampling interval.
const RSS_EVERY: Duration = Duration::from_millis(20);
/// How long an acknowledged order may take to reach the screen after its phase.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the daemon to answer `/healthz` again after an attack.
const RECOVERY_MAX: Duration = Duration::from_secs(60);
/// Orders the probe customer may place over the whole phase (the tracker's size).
const PROBE_ORDERS: usize = 200_000;
const NO_PHASE: usize = usize::MAX;

const PASSWORD: &str = "bench kaffe er godt";
const CUSTOMER: &str = "probe@bench.local";
const ATTACKING_CUSTOMER: &str = "attacker@bench.local";
/// The account the login flood guesses at.
const VICTIM: &str = "victim@bench.local";

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Attack {
    /// One socket sending 125-byte pings as fast as it can, never reading.
    PingFlood,
    /// Waves of parallel wrong-password logins.
    Logins,
    /// Waves of sockets joining `collection:order` with `{}` and hanging up at once.
    JoinHangUp,
    /// A customer posting orders that repeat one value, plus big order-list GETs.
    Amplification,
    /// Connections sending part of a body or header block and never finishing.
    StuckRequests,
    /// Sockets subscribed to `collection:order` that never read.
    SlowReaders,
}

impl Attack {
    const ALL: [Attack; 6] = [
        Attack::PingFlood,
        Attack::Logins,
        Attack::JoinHangUp,
        Attack::Amplification,
        Attack::StuckRequests,
        Attack::SlowReaders,
    ];

    fn name(self) -> String {
        self.to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_owned())
    }
}

#[derive(clap::Args, Clone)]
pub struct HostileArgs {
    /// Also run the hostile phase: each attack from 127.0.0.2 in turn, beside a quiet run.
    #[arg(long)]
    pub hostile: bool,
    /// Run only the hostile phase (no socket counts, menu boards or floors).
    #[arg(long)]
    pub hostile_only: bool,
    /// The attacks to run, comma separated (default: all six).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub hostile_attacks: Vec<Attack>,
    /// Seconds of the quiet run and of each attack.
    #[arg(long, default_value_t = 10.0)]
    pub hostile_seconds: f64,
    /// Orders in the database before the daemon starts.
    #[arg(long, default_value_t = 3000)]
    pub hostile_seed_orders: usize,
    /// Parallel wrong-password logins per wave.
    #[arg(long, default_value_t = 1000)]
    pub hostile_logins: usize,
    /// Sockets per join-and-hang-up wave.
    #[arg(long, default_value_t = 300)]
    pub hostile_join_sockets: usize,
    /// Times the amplifying order repeats its one value (about 2 bytes of body each; the
    /// body limit is 1 MiB).
    #[arg(long, default_value_t = 100_000)]
    pub hostile_order_values: usize,
    /// Amplifying orders posted at most.
    #[arg(long, default_value_t = 3)]
    pub hostile_big_orders: usize,
    /// Connections that send a partial request and never finish it.
    #[arg(long, default_value_t = 500)]
    pub hostile_stuck: usize,
    /// Subscribed sockets that never read.
    #[arg(long, default_value_t = 64)]
    pub hostile_slow_readers: usize,
    /// Stop an attack early once the daemon's RSS passes this many MiB (protects the
    /// machine from an undefended daemon; the report says so).
    #[arg(long, default_value_t = 4096)]
    pub hostile_rss_cap_mib: u64,
}

impl HostileArgs {
    pub fn wanted(&self) -> bool {
        self.hostile || self.hostile_only
    }

    /// Tiny counts for the test suite.
    pub fn smoke(&mut self) {
        self.hostile_seconds = self.hostile_seconds.min(1.0);
        self.hostile_seed_orders = self.hostile_seed_orders.min(50);
        self.hostile_logins = self.hostile_logins.min(6);
        self.hostile_join_sockets = self.hostile_join_sockets.min(10);
        self.hostile_order_values = self.hostile_order_values.min(1000);
        self.hostile_big_orders = self.hostile_big_orders.min(1);
        self.hostile_stuck = self.hostile_stuck.min(12);
        self.hostile_slow_readers = self.hostile_slow_readers.min(4);
    }

    fn attacks(&self) -> Vec<Attack> {
        match self.hostile_attacks.is_empty() {
            true => Attack::ALL.to_vec(),
            false => self.hostile_attacks.clone(),
        }
    }

    fn files_needed(&self) -> usize {
        self.hostile_logins
            .max(self.hostile_join_sockets)
            .max(self.hostile_stuck)
            .max(self.hostile_slow_readers)
            + 200
    }
}

/// The seeded database's facts the probes and attacks need.
struct Seeded {
    /// An enabled item the probe customer orders.
    item: i64,
    /// A multiple-choice key offered on an item, and one of its values.
    big: (i64, i64, i64),
}

/// The hostile phase against a daemon started on a fresh database in `dir`.
pub async fn run(
    args: &HostileArgs,
    binary: &Path,
    dir: &Path,
    token: &str,
    quiet_between: Duration,
) -> Result<HostileRun, String> {
    let nofile = process::raise_nofile() as usize;
    if nofile < args.files_needed() {
        return Err(format!(
            "open-file limit {nofile} is too low for the hostile phase; raise it (ulimit -n)"
        ));
    }
    let spec = DaemonSpec {
        binary,
        dir,
        token,
        max_sockets: 0,
        lift_address_limits: false,
    };
    eprintln!("   seeding {} orders", args.hostile_seed_orders);
    let seeded = seed(&spec.db_path(), args.hostile_seed_orders).await?;
    let server = process::start_daemon(&spec)?;
    tokio::time::sleep(quiet_between.max(Duration::from_secs(1))).await;
    let idle = server.rss().map_or(0, |r| r.now_kib);
    let cap_kib = args.hostile_rss_cap_mib * 1024;
    let addr = server.addr;

    let customer = login(addr, None, CUSTOMER).await?;
    // Logged in before the login flood, which gets the attacker's address refused for a while.
    let attacker = login(addr, Some(ATTACKER), ATTACKING_CUSTOMER).await?;

    let nonce = format!("hostile-{}-{}-", std::process::id(), idle);
    let tracker = Tracker::new(&nonce, PROBE_ORDERS);
    let screen = subscribers::open_with(1, Arc::clone(&tracker), move |_| async move {
        let stream = orders::connect(addr).await?;
        // The daemon's frames, whatever their size: an amplified order is what is measured.
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        subscribers::join(stream, addr, &["collection:order"], config)
            .await
            .map(Stream::Ws)
    })
    .await?;

    let probes = Arc::new(Probes::new(1 + args.attacks().len()));
    let mut probing = JoinSet::new();
    probing.spawn(healthz_probe(addr, Arc::clone(&probes)));
    probing.spawn(order_probe(
        addr,
        customer,
        seeded.item,
        nonce.clone(),
        Arc::clone(&probes),
    ));
    probing.spawn(rss_probe(server.pid, Arc::clone(&probes), cap_kib));

    let secs = Duration::from_secs_f64(args.hostile_seconds.max(0.1));
    let mut report = HostileRun {
        seconds_per_phase: secs.as_secs_f64(),
        seeded_orders: args.hostile_seed_orders,
        attacker_address: ATTACKER.to_string(),
        probe_address: "127.0.0.1".into(),
        rss_idle_kib: idle,
        rss_budget_kib: idle + RSS_BUDGET_KIB,
        rss_cap_kib: cap_kib,
        ..HostileRun::default()
    };
    eprintln!("   quiet run ({:.0} s)", secs.as_secs_f64());
    report.quiet = phase(&server, &probes, &tracker, 0, None, secs, "nothing".into()).await;
    for (k, attack) in args.attacks().into_iter().enumerate() {
        if !alive(server.pid) {
            report.skipped.push(attack.name());
            continue;
        }
        tokio::time::sleep(quiet_between).await;
        eprintln!("   attack {} ({:.0} s)", attack.name(), secs.as_secs_f64());
        let (what, outcomes) = (describe(args, attack), Arc::new(Outcomes::default()));
        let until = Instant::now() + secs;
        let attacking = launch(args, attack, addr, until, &attacker, &seeded, &outcomes);
        let mut run = phase(
            &server,
            &probes,
            &tracker,
            k + 1,
            Some(attacking),
            secs,
            what,
        )
        .await;
        run.attack = attack.name();
        run.attacker = outcomes.take();
        report.attacks.push(run);
    }
    probing.abort_all();
    screen.close().await;
    if let Err(e) = server.stop() {
        eprintln!("   the daemon {e}");
    }
    report.judge();
    Ok(report)
}

type AttackFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

fn launch(
    args: &HostileArgs,
    attack: Attack,
    addr: SocketAddr,
    until: Instant,
    attacker_cookie: &str,
    seeded: &Seeded,
    out: &Arc<Outcomes>,
) -> AttackFuture {
    let out = Arc::clone(out);
    match attack {
        Attack::PingFlood => Box::pin(attacks::ping_flood(addr, until, out)),
        Attack::Logins => Box::pin(attacks::logins(
            addr,
            until,
            args.hostile_logins,
            VICTIM.into(),
            out,
        )),
        Attack::JoinHangUp => Box::pin(attacks::join_and_hang_up(
            addr,
            until,
            args.hostile_join_sockets,
            out,
        )),
        Attack::Amplification => {
            let (item, key, value) = seeded.big;
            let big = BigOrder {
                item,
                key,
                value,
                repeats: args.hostile_order_values,
                orders: args.hostile_big_orders,
            };
            Box::pin(attacks::amplification(
                addr,
                until,
                attacker_cookie.to_owned(),
                big,
                out,
            ))
        }
        Attack::StuckRequests => Box::pin(attacks::stuck_requests(
            addr,
            until,
            args.hostile_stuck,
            out,
        )),
        Attack::SlowReaders => Box::pin(attacks::slow_readers(
            addr,
            until,
            args.hostile_slow_readers,
            out,
        )),
    }
}

fn describe(args: &HostileArgs, attack: Attack) -> String {
    match attack {
        Attack::PingFlood => "one socket, 125-byte pings, never reading".into(),
        Attack::Logins => format!(
            "waves of {} parallel wrong-password logins",
            args.hostile_logins
        ),
        Attack::JoinHangUp => format!(
            "waves of {} sockets joining collection:order with {{}} and hanging up",
            args.hostile_join_sockets
        ),
        Attack::Amplification => format!(
            "up to {} customer orders repeating one value {} times + 4 loops of order-list GETs",
            args.hostile_big_orders, args.hostile_order_values
        ),
        Attack::StuckRequests => format!(
            "{} connections with a partial login body, order body or header block",
            args.hostile_stuck
        ),
        Attack::SlowReaders => format!(
            "{} sockets on collection:order that never read (4 KiB receive buffers)",
            args.hostile_slow_readers
        ),
    }
}

/// One phase: the probes' samples go to slot `k` while `attack` (if any) runs until its
/// deadline; then the phase's orders get their chance to reach the screen.
async fn phase(
    server: &Server,
    probes: &Probes,
    tracker: &Tracker,
    k: usize,
    attack: Option<AttackFuture>,
    secs: Duration,
    what: String,
) -> PhaseRun {
    let started = Instant::now();
    let now_kib = server.rss().map_or(0, |r| r.now_kib);
    probes.rss_max.store(now_kib, Ordering::Relaxed);
    probes.rss_samples.store(0, Ordering::Relaxed);
    probes.over_cap.store(false, Ordering::Relaxed);
    probes.phase.store(k, Ordering::Relaxed);
    let attack = attack.unwrap_or_else(|| Box::pin(tokio::time::sleep(secs)));
    // Every attack stops at its deadline by itself; the grace covers sockets still closing.
    let stop = started + secs + Duration::from_secs(5);
    let cap = async {
        while !probes.over_cap.load(Ordering::Relaxed) {
            tokio::time::sleep(RSS_EVERY).await;
        }
    };
    let stopped_at_rss_cap = tokio::select! {
        _ = attack => false,
        _ = tokio::time::sleep_until(stop) => false,
        _ = cap => true,
    };
    probes.phase.store(NO_PHASE, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let recovery_s = match k {
        0 => None,
        _ => recovery(server.addr).await,
    };
    probes.settle(k).await;
    let samples = probes.take(k);
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut missed = 0;
    for &i in &samples.placed {
        let left = deadline.saturating_duration_since(Instant::now());
        if !tracker.wait_for(i, 1, left).await {
            missed += 1;
        }
    }
    PhaseRun {
        attack: match k {
            0 => "quiet".into(),
            _ => String::new(),
        },
        what,
        seconds,
        rss_peak_kib: probes.rss_max.load(Ordering::Relaxed),
        rss_samples: probes.rss_samples.load(Ordering::Relaxed),
        healthz: Stats::of_ns(samples.healthz),
        healthz_failed: samples.healthz_failed,
        ack: Stats::of_ns(samples.acks),
        orders_failed: samples.orders_failed,
        orders_acked: samples.placed.len(),
        deliveries_missed: missed,
        screen_closed: tracker.closed_early.load(Ordering::Relaxed) > 0,
        stopped_at_rss_cap,
        recovery_s,
        daemon_alive: alive(server.pid),
        ..PhaseRun::default()
    }
}

/// What the probes saw in one phase.
#[derive(Default)]
struct Samples {
    healthz: Vec<u64>,
    healthz_failed: u64,
    acks: Vec<u64>,
    orders_failed: u64,
    /// Tracker slots of the orders acknowledged in the phase.
    placed: Vec<usize>,
}

/// Shared between the probe tasks and the phase loop.
struct Probes {
    /// The phase samples go to (`NO_PHASE` between phases).
    phase: AtomicUsize,
    per_phase: Mutex<Vec<Samples>>,
    /// Largest `VmRSS` since the phase began, in KiB.
    rss_max: AtomicU64,
    rss_samples: AtomicU64,
    /// `VmRSS` passed the cap: the phase loop stops the attack.
    over_cap: AtomicBool,
    /// The phase of the `/healthz` probe and of the order in flight (`NO_PHASE`: none), so a
    /// phase ends only once its slowest probe is counted: a stall is what is measured.
    healthz_pending: AtomicUsize,
    order_pending: AtomicUsize,
}

impl Probes {
    fn new(phases: usize) -> Probes {
        Probes {
            phase: AtomicUsize::new(NO_PHASE),
            per_phase: Mutex::new((0..phases).map(|_| Samples::default()).collect()),
            rss_max: AtomicU64::new(0),
            rss_samples: AtomicU64::new(0),
            over_cap: AtomicBool::new(false),
            healthz_pending: AtomicUsize::new(NO_PHASE),
            order_pending: AtomicUsize::new(NO_PHASE),
        }
    }

    /// Wait (bounded by the probes' own timeout) until no probe sent in `phase` is in flight.
    async fn settle(&self, phase: usize) {
        let deadline = Instant::now() + PROBE_TIMEOUT + Duration::from_secs(1);
        while (self.healthz_pending.load(Ordering::Relaxed) == phase
            || self.order_pending.load(Ordering::Relaxed) == phase)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn record(&self, phase: usize, f: impl FnOnce(&mut Samples)) {
        if let Ok(mut all) = self.per_phase.lock() {
            if let Some(s) = all.get_mut(phase) {
                f(s);
            }
        }
    }

    fn take(&self, phase: usize) -> Samples {
        self.per_phase
            .lock()
            .ok()
            .and_then(|mut all| all.get_mut(phase).map(std::mem::take))
            .unwrap_or_default()
    }
}

fn probe_clock() -> tokio::time::Interval {
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every
}

async fn reuse(
    conn: &mut Option<BufReader<TcpStream>>,
    addr: SocketAddr,
) -> Result<&mut BufReader<TcpStream>, String> {
    if conn.is_none() {
        *conn = Some(BufReader::new(orders::connect(addr).await?));
    }
    conn.as_mut().ok_or_else(|| "no connection".into())
}

/// `GET /healthz` every 50 ms on a keep-alive connection (a new one after a failure).
async fn healthz_probe(addr: SocketAddr, probes: Arc<Probes>) {
    let (mut every, mut conn) = (probe_clock(), None);
    loop {
        every.tick().await;
        let phase = probes.phase.load(Ordering::Relaxed);
        probes.healthz_pending.store(phase, Ordering::Relaxed);
        let sent = Instant::now();
        let asked = async {
            let c = reuse(&mut conn, addr).await?;
            orders::request(c, addr, "GET", "/healthz", "", "").await
        };
        let ok = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, asked).await,
            Ok(Ok((200, _)))
        );
        let took = sent.elapsed().as_nanos() as u64;
        if !ok {
            conn = None;
        }
        probes.record(phase, |s| {
            s.healthz.push(took);
            s.healthz_failed += u64::from(!ok);
        });
        probes.healthz_pending.store(NO_PHASE, Ordering::Relaxed);
    }
}

/// The logged-in customer places an order every 50 ms and times its acknowledgement.
async fn order_probe(
    addr: SocketAddr,
    cookie: String,
    item: i64,
    prefix: String,
    probes: Arc<Probes>,
) {
    let headers = format!("Cookie: {cookie}\r\n");
    let (mut every, mut conn) = (probe_clock(), None);
    for i in 0..PROBE_ORDERS {
        every.tick().await;
        let phase = probes.phase.load(Ordering::Relaxed);
        probes.order_pending.store(phase, Ordering::Relaxed);
        let body = format!(
            r#"{{"items":[{{"item":{item},"customizations":[]}}],"state":"received","missing_information":false,"uuid":"{prefix}{i}"}}"#
        );
        let sent = Instant::now();
        let placed = async {
            let c = reuse(&mut conn, addr).await?;
            let path = "/api/collections/order/records";
            orders::exchange(c, addr, "POST", path, &headers, &body).await
        };
        let ok = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, placed).await,
            Ok(Ok(ref reply)) if reply.status == 201
        );
        let took = sent.elapsed().as_nanos() as u64;
        if !ok {
            conn = None;
        }
        probes.record(phase, |s| {
            s.acks.push(took);
            if ok {
                s.placed.push(i);
            } else {
                s.orders_failed += 1;
            }
        });
        probes.order_pending.store(NO_PHASE, Ordering::Relaxed);
    }
}

/// The daemon's `VmRSS` every 20 ms: the phase's peak, and the safety cap.
async fn rss_probe(pid: u32, probes: Arc<Probes>, cap_kib: u64) {
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

/// Seconds until a `/healthz` on a fresh connection is answered (at most `RECOVERY_MAX`).
async fn recovery(addr: SocketAddr) -> Option<f64> {
    let started = Instant::now();
    while started.elapsed() < RECOVERY_MAX {
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

fn alive(pid: u32) -> bool {
    process::rss_of(pid).is_some()
}

/// Log in from `src` (default 127.0.0.1); returns the `kaffediem_session=...` pair.
async fn login(
    addr: SocketAddr,
    src: Option<std::net::Ipv4Addr>,
    email: &str,
) -> Result<String, String> {
    let stream = match src {
        Some(src) => attacks::tcp_from(src, addr, None)
            .await
            .map_err(|e| format!("connect from {src}: {e}"))?,
        None => orders::connect(addr).await?,
    };
    let mut conn = BufReader::new(stream);
    let body = format!(r#"{{"email":"{email}","password":"{PASSWORD}"}}"#);
    let reply = orders::exchange(&mut conn, addr, "POST", "/api/session", "", &body).await?;
    match (reply.status, reply.set_cookie) {
        (200, Some(cookie)) => Ok(cookie),
        (status, _) => Err(format!(
            "login {email}: HTTP {status}: {}",
            String::from_utf8_lossy(&reply.body)
        )),
    }
}

/// A fresh database: the demo café, three customers (the probe, the attacker, the login
/// flood's victim) and `orders` past orders of a realistic size (three lines, a few
/// choices each: about 2 KB as stored).
async fn seed(db: &Path, orders: usize) -> Result<Seeded, String> {
    let options = StoreOptions {
        path: db.to_path_buf(),
        readers: 1,
        records: RecordCtx::default(),
    };
    let (store, _feed) = Store::open(options, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    kaffediem::store::demo::load(&store.writer)
        .await
        .map_err(|e| e.to_string())?;
    let hash = kaffediem::accounts::hash_password(PASSWORD).map_err(|e| e.to_string())?;
    let seeded = store
        .writer
        .write(move |tx| {
            for email in [CUSTOMER, ATTACKING_CUSTOMER, VICTIM] {
                tx.execute(
                    "INSERT INTO user (email, name, is_admin, password_hash) VALUES (?1, 'Bench', 0, ?2)",
                    rusqlite::params![email, hash],
                )?;
            }
            let item: i64 =
                tx.query_row("SELECT id FROM item WHERE enable = 1 ORDER BY id", [], |r| {
                    r.get(0)
                })?;
            let (key, value): (i64, i64) = tx.query_row(
                "SELECT k.id, v.id FROM customization_key k JOIN customization_value v \
                 ON v.belongs_to = k.id WHERE k.multiple_choice = 1 AND k.enable = 1 \
                 AND v.enable = 1 ORDER BY k.id, v.id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let offering: i64 = tx.query_row(
                "SELECT i.id FROM item i JOIN category c ON c.id = i.category_id \
                 WHERE i.enable = 1 AND EXISTS (SELECT 1 FROM json_each(c.valid_customizations) \
                 WHERE CAST(value AS INTEGER) = ?1) ORDER BY i.id",
                [key],
                |r| r.get(0),
            )?;
            let line = serde_json::json!({
                "item_id": item, "name": "Cappuccino", "price": 45, "category": "Kaffe",
                "customizations": [
                    {"key_id": 1, "key_name": "Størrelse", "value_id": 2, "value_name": "Stor",
                     "price_change": 10, "constant_price": true, "label_color": "#8d6e63"},
                    {"key_id": 2, "key_name": "Melk", "value_id": 4, "value_name": "Havre",
                     "price_change": 5, "constant_price": true, "label_color": "#42a5f5"},
                    {"key_id": 4, "key_name": "Sirup", "value_id": 8, "value_name": "Karamell",
                     "price_change": 5, "constant_price": true, "label_color": "#ec407a"},
                ],
                "total": 65,
            });
            let items = serde_json::Value::Array(vec![line; 3]).to_string();
            let mut insert = tx.prepare(
                r#"INSERT INTO "order" (uuid, customer_id, day_id, state, items, total_nok)
                   VALUES (?1, NULL, ?2, 'completed', ?3, 195)"#,
            )?;
            for i in 0..orders {
                insert.execute(rusqlite::params![
                    format!("seed-{i}"),
                    101 + i as i64,
                    items
                ])?;
            }
            Ok::<_, StoreError>(Seeded {
                item,
                big: (offering, key, value),
            })
        })
        .await
        .map_err(|e| format!("seeding the hostile database: {e}"))?;
    store.shutdown().await.map_err(|e| e.to_string())?;
    Ok(seeded)
}
