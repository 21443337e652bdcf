//! The hostile phase (issue 10): the daemon with its default limits, a database holding
//! thousands of orders, and probes from 127.0.0.1 — `/healthz` every 50 ms, a logged-in
//! customer placing an order every 50 ms, a screen on `collection:order` counting those
//! orders' deliveries, the daemon's `VmRSS` sampled every 20 ms — first quiet, then during
//! each attack from 127.0.0.2 in turn (`attacks`). Every attack is bounded in time and count;
//! the budget is judged in the report (`hostile_report`), never asserted.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use tokio::io::BufReader;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use kaffediem::clock::SystemClock;
use kaffediem::store::{RecordCtx, Store, StoreError, StoreOptions};

use crate::attacks::{self, BigOrder, Outcomes, ATTACKER};
use crate::hostile_probes::{self as probe, Probes, NO_PHASE, RSS_EVERY};
use crate::hostile_report::{HostileRun, PhaseRun, RSS_BUDGET_KIB};
use crate::orders;
use crate::process::{self, DaemonSpec, Server};
use crate::report::Stats;
use crate::subscribers::{self, Stream, Subscribers, Tracker};

/// How long an acknowledged order may take to reach the screen after its phase.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the daemon to answer `/healthz` again after an attack; past it the
/// daemon is restarted, so the next attack meets a working one.
const RECOVERY_MAX: Duration = Duration::from_secs(60);
/// Orders the probe customer may place over the whole phase (the tracker's size).
const PROBE_ORDERS: usize = 200_000;

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
    /// Waves of logins and of join-and-hang-up at most (0: as many as fit in the time).
    #[arg(long, default_value_t = 0)]
    pub hostile_waves: usize,
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
        // One wave each: the suite checks the phase works, not how long an undefended
        // daemon stalls.
        self.hostile_waves = 1;
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
    /// (item, key, value): a multiple-choice key offered on that item, and one of its values,
    /// for the amplifying order.
    big: (i64, i64, i64),
}

/// The daemon under test with its probes and its healthy screen; rebuilt on the same
/// database if an attack leaves the daemon unable to answer.
struct Rig {
    server: Server,
    /// One socket on `collection:order` from 127.0.0.1: the café's screen that must keep
    /// getting every order.
    screen: Subscribers,
    /// The `/healthz`, order and RSS probes (aborted when the rig stops).
    probing: JoinSet<()>,
}

/// Who and what the rig needs to (re)start.
struct Setup<'a> {
    /// The daemon with its default limits, on the seeded database.
    spec: DaemonSpec<'a>,
    /// The item the probe customer orders.
    item: i64,
    /// The probe customer's session (it survives a restart: sessions live in the database).
    cookie: String,
    /// Counts the probe orders' arrivals at the screen, across restarts.
    tracker: Arc<Tracker>,
    /// The probe orders' uuid prefix.
    nonce: String,
    /// Samples per phase, shared by every rig.
    probes: Arc<Probes>,
    /// The RSS past which an attack is stopped early.
    cap_kib: u64,
}

impl Rig {
    async fn start(setup: &Setup<'_>) -> Result<Rig, String> {
        Rig::around(process::start_daemon(&setup.spec)?, setup).await
    }

    /// The screen and the probes around a started daemon.
    async fn around(server: Server, setup: &Setup<'_>) -> Result<Rig, String> {
        let addr = server.addr;
        let screen = subscribers::open_with(1, Arc::clone(&setup.tracker), move |_| async move {
            let stream = orders::connect(addr).await?;
            // The daemon's frames, whatever their size: an amplified order is what is measured.
            let config = WebSocketConfig::default()
                .max_message_size(None)
                .max_frame_size(None);
            subscribers::join(stream, addr, &[("collection:order", "{}")], config)
                .await
                .map(Stream::Ws)
        })
        .await?;
        let mut probing = JoinSet::new();
        probing.spawn(probe::healthz(addr, Arc::clone(&setup.probes)));
        probing.spawn(probe::orders(
            addr,
            setup.cookie.clone(),
            setup.item,
            setup.nonce.clone(),
            PROBE_ORDERS,
            Arc::clone(&setup.probes),
        ));
        probing.spawn(probe::rss(
            server.pid,
            Arc::clone(&setup.probes),
            setup.cap_kib,
        ));
        Ok(Rig {
            server,
            screen,
            probing,
        })
    }

    async fn stop(mut self) {
        self.probing.abort_all();
        while self.probing.join_next().await.is_some() {}
        self.screen.close().await;
        if let Err(e) = self.server.stop() {
            eprintln!("   the daemon {e}");
        }
    }
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
    let customer = login(server.addr, None, CUSTOMER).await?;
    // Logged in before the login flood, which gets the attacker's address refused for a while.
    let attacker = login(server.addr, Some(ATTACKER), ATTACKING_CUSTOMER).await?;

    let nonce = format!("hostile-{}-{}-", std::process::id(), idle);
    let attacks_run = args.attacks();
    let setup = Setup {
        spec,
        item: seeded.item,
        cookie: customer,
        tracker: Tracker::new(&nonce, PROBE_ORDERS),
        nonce,
        probes: Arc::new(Probes::new(1 + attacks_run.len())),
        cap_kib: args.hostile_rss_cap_mib * 1024,
    };
    let mut rig = Rig::around(server, &setup).await?;
    let secs = Duration::from_secs_f64(args.hostile_seconds.max(0.1));
    let mut report = HostileRun {
        seconds_per_phase: secs.as_secs_f64(),
        seeded_orders: args.hostile_seed_orders,
        attacker_address: ATTACKER.to_string(),
        probe_address: "127.0.0.1".into(),
        rss_idle_kib: idle,
        rss_budget_kib: RSS_BUDGET_KIB,
        rss_cap_kib: setup.cap_kib,
        ..HostileRun::default()
    };
    tokio::time::sleep(quiet_between).await;
    eprintln!("   quiet run ({:.0} s)", secs.as_secs_f64());
    report.quiet = phase(&rig.server, &setup, 0, None, secs).await;
    report.quiet.attack = "quiet".into();
    report.quiet.what = "nothing: the probes alone".into();
    for (k, attack) in attacks_run.into_iter().enumerate() {
        tokio::time::sleep(quiet_between).await;
        eprintln!("   attack {} ({:.0} s)", attack.name(), secs.as_secs_f64());
        let outcomes = Arc::new(Outcomes::default());
        let until = Instant::now() + secs;
        let addr = rig.server.addr;
        let attacking = launch(args, attack, addr, until, &attacker, &seeded, &outcomes);
        let mut run = phase(&rig.server, &setup, k + 1, Some(attacking), secs).await;
        run.attack = attack.name();
        run.what = describe(args, attack);
        run.attacker = outcomes.take();
        if run.recovery_s.is_none() || !run.daemon_alive {
            eprintln!("   the daemon did not recover; restarting it for the next attack");
            rig.stop().await;
            rig = Rig::start(&setup).await?;
            run.daemon_restarted = true;
        }
        report.attacks.push(run);
    }
    rig.stop().await;
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
            (args.hostile_logins, args.hostile_waves),
            VICTIM.into(),
            out,
        )),
        Attack::JoinHangUp => Box::pin(attacks::join_and_hang_up(
            addr,
            until,
            (args.hostile_join_sockets, args.hostile_waves),
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
        Attack::StuckRequests => {
            let cookie = attacker_cookie.to_owned();
            let n = args.hostile_stuck;
            Box::pin(async move { attacks::stuck_requests(addr, until, n, &cookie, out).await })
        }
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
            "{} of {} parallel wrong-password logins",
            waves(args.hostile_waves),
            args.hostile_logins
        ),
        Attack::JoinHangUp => format!(
            "{} of {} sockets joining collection:order with {{}} and hanging up",
            waves(args.hostile_waves),
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

fn waves(max: usize) -> String {
    match max {
        0 => "waves".into(),
        1 => "one wave".into(),
        n => format!("up to {n} waves"),
    }
}

/// One phase: the probes' samples go to slot `k` while `attack` (if any) runs until its
/// deadline; then the daemon gets `RECOVERY_MAX` to answer `/healthz` again and the phase's
/// orders their chance to reach the screen. The RSS peak covers the attack and that
/// aftermath (work an attack queued is its cost too).
async fn phase(
    server: &Server,
    setup: &Setup<'_>,
    k: usize,
    attack: Option<AttackFuture>,
    secs: Duration,
) -> PhaseRun {
    let probes = &setup.probes;
    let started = Instant::now();
    let closed_before = setup.tracker.closed_early.load(Ordering::Relaxed);
    let now_kib = server.rss().map_or(0, |r| r.now_kib);
    probes.rss_max.store(now_kib, Ordering::Relaxed);
    probes.rss_samples.store(0, Ordering::Relaxed);
    probes.over_cap.store(false, Ordering::Relaxed);
    probes.phase.store(k, Ordering::Relaxed);
    // The phase lasts `secs` even when the attack is over sooner (a single wave, a socket the
    // daemon closed): what the attack left the daemon doing is measured too.
    let attack = async {
        if let Some(attack) = attack {
            attack.await;
        }
        tokio::time::sleep_until(started + secs).await;
    };
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
        _ => probe::recovery(server.addr, RECOVERY_MAX).await,
    };
    let samples = probes.take(k).await;
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut missed = 0;
    for &i in &samples.placed {
        let left = deadline.saturating_duration_since(Instant::now());
        if !setup.tracker.wait_for(i, 1, left).await {
            missed += 1;
        }
    }
    PhaseRun {
        seconds,
        rss_peak_kib: probes.rss_max.load(Ordering::Relaxed),
        rss_start_kib: now_kib,
        rss_samples: probes.rss_samples.load(Ordering::Relaxed),
        healthz: Stats::of_ns(samples.healthz),
        healthz_failed: samples.healthz_failed,
        ack: Stats::of_ns(samples.acks),
        orders_failed: samples.orders_failed,
        orders_acked: samples.placed.len(),
        deliveries_missed: missed,
        screen_closed: setup.tracker.closed_early.load(Ordering::Relaxed) > closed_before,
        stopped_at_rss_cap,
        recovery_s,
        daemon_alive: alive(server.pid),
        ..PhaseRun::default()
    }
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
