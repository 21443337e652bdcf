//! The history phase (issue 14): a café's database grows all school year. For each N in
//! `--history` the tool writes N past orders with `kaffediem demo --history N` (the daemon's
//! own generator), starts the daemon on that file and measures what a café does every day:
//! start to READY and RSS after start, the socket run of the empty-database phases (one order
//! at a time to subscribers, orders/s), join snapshots of `collection:order` (today, and with
//! no options), the HTTP order list of today, a foreign `UPDATE` of one order until a
//! subscriber has it, `kaffediem backup` and `check`. Each figure is judged against the same
//! figure on the empty database (N = 0) of the same run, and the curve is drawn as an SVG.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::orders::{self, Placement};
use crate::process::{self, DaemonSpec, Server};
use crate::report::{SocketRun, Stats, Verdict};
use crate::subscribers::{self, Ws};

/// How far a per-operation figure at a school year of history may drift from the empty
/// database's (issue 14).
pub const TARGET_RATIO: f64 = 1.2;
/// The history the target is judged at: 200 days × 600 orders.
pub const SCHOOL_YEAR: u64 = 120_000;

#[derive(clap::Args)]
pub struct HistoryArgs {
    /// Order counts of past history to measure at, comma separated (0 is the empty database
    /// every other count is judged against), e.g. `0,10000,120000,1000000`.
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    pub history: Vec<u64>,
    /// Run only the history phase (no socket runs, menu boards or floors).
    #[arg(long)]
    pub history_only: bool,
    /// Kitchen screens (today's orders on `collection:order`, and `collection:status`) during
    /// the history phase's socket run.
    #[arg(long, default_value_t = 100)]
    pub history_sockets: usize,
    /// Repetitions of each timed operation (joins, lists, foreign writes).
    #[arg(long, default_value_t = 30)]
    pub history_repeats: usize,
    /// Where to draw the curve (SVG); default: beside the JSON file.
    #[arg(long, value_name = "PATH")]
    pub history_svg: Option<PathBuf>,
}

/// Everything measured at one history size.
#[derive(Debug, Default, Serialize)]
pub struct HistoryPoint {
    pub orders: u64,
    /// A control point, not part of the curve: only as many past orders as the school year's
    /// no-options snapshot held, so that join answers as much without the history behind it.
    pub window_control: bool,
    /// `kaffediem demo --history N`: seconds to write the history, and the file's size.
    pub generate_s: f64,
    pub db_bytes: u64,
    /// Process start → `READY=1` on `NOTIFY_SOCKET` (systemd's view of a start).
    pub start_to_ready: Stats,
    /// `VmRSS` one second after READY.
    pub rss_after_start_kib: u64,
    /// The empty-database phases: one order at a time to the subscribers, acks, orders/s.
    pub socket_run: SocketRun,
    /// Join of `collection:order` with `{"options": {"from_date": "today"}}`: join → reply.
    pub join_today: Stats,
    pub join_today_records: usize,
    /// Join of `collection:order` with no options (the last days, capped).
    pub join_default: Stats,
    pub join_default_records: usize,
    /// `GET /api/collections/order/records?from_date=today`.
    pub list_today: Stats,
    pub list_today_bytes: usize,
    /// A foreign `UPDATE` of one of today's orders (another process's connection, as the
    /// sqlite3 shell) → the change frame at a subscriber.
    pub foreign_write: Stats,
    /// `kaffediem backup FILE` and `kaffediem check`, while the daemon serves.
    pub backup_s: f64,
    pub check_s: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct HistoryRun {
    pub points: Vec<HistoryPoint>,
    /// The SVG the curve was drawn into.
    pub svg: Option<PathBuf>,
}

/// Run the history phase for every N of `args.history`.
pub async fn run(
    main: &crate::RunArgs,
    daemon: &Path,
    dir: &Path,
    svg: PathBuf,
) -> Result<HistoryRun, String> {
    let args = &main.history;
    let mut run = HistoryRun::default();
    for &n in &args.history {
        let here = dir.join(format!("history-{n}"));
        std::fs::create_dir_all(&here).map_err(|e| e.to_string())?;
        eprintln!("== history: {n} past orders");
        run.points.push(point(main, daemon, &here, n).await?);
    }
    // The curve: the control point below is not on it.
    crate::plot::history_svg(&run.points, &svg)?;
    run.svg = Some(svg);
    // The join without options sends the last days (capped), so with history it answers with
    // more records than on the empty database. The control point answers with as many, with
    // no history behind them: the school year is judged against it as well.
    if let Some(records) = window_control_size(&run.points) {
        let here = dir.join("history-window");
        std::fs::create_dir_all(&here).map_err(|e| e.to_string())?;
        eprintln!("== history: {records} past orders (the window's answer without the history)");
        let mut control = point(main, daemon, &here, records).await?;
        control.window_control = true;
        run.points.push(control);
    }
    Ok(run)
}

async fn point(
    main: &crate::RunArgs,
    daemon: &Path,
    dir: &Path,
    n: u64,
) -> Result<HistoryPoint, String> {
    let args = &main.history;
    let sockets = if main.smoke { 5 } else { args.history_sockets };
    let repeats = if main.smoke { 3 } else { args.history_repeats };
    let spec = DaemonSpec {
        binary: daemon,
        dir,
        token: &main.token,
        max_sockets: sockets + 1000,
        lift_address_limits: true,
    };
    let mut p = HistoryPoint {
        orders: n,
        ..HistoryPoint::default()
    };
    // The café: the demo menu, then N past orders, written by the daemon's own generator.
    let started = Instant::now();
    let mut demo = Command::new(daemon);
    demo.arg("demo");
    if n > 0 {
        demo.args(["--history", &n.to_string()]);
    }
    cli(demo, &spec)?;
    p.generate_s = started.elapsed().as_secs_f64();
    p.db_bytes = std::fs::metadata(spec.db_path()).map_or(0, |m| m.len());
    eprintln!(
        "   wrote it in {:.1} s ({:.1} MB)",
        p.generate_s,
        p.db_bytes as f64 / 1e6
    );

    // Start → READY, a few times; the last daemon stays up for the rest.
    let starts = if main.smoke { 1 } else { 3 };
    let mut ready = Vec::new();
    let mut server = None;
    for k in 0..starts {
        if let Some((s, _notify)) = server.take() {
            stop(s);
        }
        let (s, took, notify) = start_until_ready(&spec, k)?;
        ready.push(took.as_nanos() as u64);
        server = Some((s, notify));
    }
    // The notify socket stays bound until the daemon stops (it says STOPPING=1 there).
    let (server, _notify) = server.ok_or("the daemon did not start")?;
    p.start_to_ready = Stats::of_ns(ready);
    tokio::time::sleep(crate::SETTLE).await;
    p.rss_after_start_kib = server.rss().map_or(0, |r| r.now_kib);

    let placement = Placement::Http {
        addr: server.addr,
        token: main.token.clone(),
        item: orders::pick_item(server.addr, &main.token).await?,
    };
    // The subscribers are kitchen screens (today's orders): joined without options, each
    // would first pull the last days' orders (up to 2 000 records, 13× the empty database's),
    // which the join-without-options figure below measures on its own.
    let screens = crate::Screens::Phoenix(crate::subscribers::KITCHEN_SCREEN);
    p.socket_run = crate::measure(main, &server, &placement, sockets, screens).await?;

    let (today, records) =
        time_joins(server.addr, r#"{"options":{"from_date":"today"}}"#, repeats).await?;
    (p.join_today, p.join_today_records) = (today, records);
    let (all, records) = time_joins(server.addr, "{}", repeats).await?;
    (p.join_default, p.join_default_records) = (all, records);
    (p.list_today, p.list_today_bytes) = time_list(server.addr, &main.token, repeats).await?;
    p.foreign_write = foreign_writes(server.addr, &spec.db_path(), repeats).await?;

    let started = Instant::now();
    let mut backup = Command::new(daemon);
    backup
        .arg("backup")
        .arg(dir.join("backup.db"))
        .arg("--force");
    cli(backup, &spec)?;
    p.backup_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut check = Command::new(daemon);
    check.arg("check");
    cli(check, &spec)?;
    p.check_s = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(dir.join("backup.db"));
    stop(server);
    eprintln!(
        "   ready {:.0} ms, RSS {:.1} MiB, join today {:.2} ms, list today {:.2} ms, ack {:.2} ms, foreign write {:.1} ms, backup {:.2} s, check {:.2} s",
        p.start_to_ready.p50_ms,
        p.rss_after_start_kib as f64 / 1024.0,
        p.join_today.p50_ms,
        p.list_today.p50_ms,
        p.socket_run.ack.p50_ms,
        p.foreign_write.p50_ms,
        p.backup_s,
        p.check_s
    );
    Ok(p)
}

fn stop(server: Server) {
    if let Err(e) = server.stop() {
        eprintln!("   the daemon {e}");
    }
}

/// Run a `kaffediem` subcommand on this phase's database; it must succeed.
fn cli(mut cmd: Command, spec: &DaemonSpec<'_>) -> Result<(), String> {
    let out = cmd
        .env("KAFFEDIEM_DB", spec.db_path())
        .env_remove("KAFFEDIEM_CONFIG")
        .env_remove("RUST_LOG")
        .current_dir(spec.dir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", spec.binary.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Start the daemon with a `NOTIFY_SOCKET` of our own and time process start → `READY=1`.
fn start_until_ready(
    spec: &DaemonSpec<'_>,
    k: usize,
) -> Result<(Server, Duration, UnixDatagram), String> {
    let path = spec.dir.join(format!("notify-{k}.sock"));
    let _ = std::fs::remove_file(&path);
    let notify = UnixDatagram::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut cmd = process::daemon_command(spec)?;
    cmd.env("NOTIFY_SOCKET", &path);
    let started = Instant::now();
    let server = process::spawn(cmd, "daemon")?;
    let mut buf = [0u8; 512];
    loop {
        let got = notify
            .recv(&mut buf)
            .map_err(|e| format!("no READY=1 from the daemon: {e}"))?;
        if String::from_utf8_lossy(&buf[..got])
            .lines()
            .any(|l| l == "READY=1")
        {
            return Ok((server, started.elapsed(), notify));
        }
    }
}

/// A bare socket (no joins) for timing joins and watching changes.
async fn socket(addr: std::net::SocketAddr) -> Result<Ws, String> {
    let stream = orders::connect(addr).await?;
    let config = WebSocketConfig::default();
    subscribers::join(stream, addr, &[], config).await
}

/// Read frames until `pred` holds for one; bounded.
async fn frame_where(ws: &mut Ws, pred: impl Fn(&str) -> bool) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + crate::DELIVERY_TIMEOUT;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| "no answer within the delivery timeout".to_string())?
            .ok_or("the daemon closed the socket")?
            .map_err(|e| e.to_string())?;
        if let Message::Text(t) = msg {
            if pred(t.as_str()) {
                return Ok(t.as_str().to_owned());
            }
        }
    }
}

/// Join `collection:order` with `payload` `repeats` times on one socket (a rejoin replaces
/// the join): join sent → snapshot reply read; and how many records the snapshot held.
async fn time_joins(
    addr: std::net::SocketAddr,
    payload: &str,
    repeats: usize,
) -> Result<(Stats, usize), String> {
    let mut ws = socket(addr).await?;
    let mut times = Vec::new();
    let mut records = 0;
    for r in 0..repeats {
        let join_ref = format!("j{r}");
        let frame =
            format!(r#"["{join_ref}","{join_ref}","collection:order","phx_join",{payload}]"#);
        let sent = Instant::now();
        ws.send(Message::text(frame))
            .await
            .map_err(|e| e.to_string())?;
        let marker = format!(r#"["{join_ref}","{join_ref}","collection:order","phx_reply""#);
        let reply = frame_where(&mut ws, |t| t.starts_with(&marker)).await?;
        times.push(sent.elapsed().as_nanos() as u64);
        if !reply.contains(r#""status":"ok""#) {
            return Err(format!("join refused: {}", &reply[..reply.len().min(300)]));
        }
        let v: serde_json::Value = serde_json::from_str(&reply).map_err(|e| e.to_string())?;
        records = v[4]["response"]["items"].as_array().map_or(0, Vec::len);
    }
    let _ = ws.close(None).await;
    Ok((Stats::of_ns(times), records))
}

/// `GET /api/collections/order/records?from_date=today`, `repeats` times on one connection.
async fn time_list(
    addr: std::net::SocketAddr,
    token: &str,
    repeats: usize,
) -> Result<(Stats, usize), String> {
    let mut conn = tokio::io::BufReader::new(orders::connect(addr).await?);
    let path = "/api/collections/order/records?from_date=today";
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..repeats {
        let sent = Instant::now();
        let (status, body) = orders::request(&mut conn, addr, "GET", path, token, "").await?;
        times.push(sent.elapsed().as_nanos() as u64);
        if status != 200 {
            return Err(format!("GET {path}: HTTP {status}"));
        }
        bytes = body.len();
    }
    Ok((Stats::of_ns(times), bytes))
}

/// Another process's connection (as the sqlite3 shell) updates the newest order: commit
/// started → its change frame at a subscriber joined to `collection:order`.
async fn foreign_writes(
    addr: std::net::SocketAddr,
    db: &Path,
    repeats: usize,
) -> Result<Stats, String> {
    let mut ws = socket(addr).await?;
    ws.send(Message::text(
        r#"["w","w","collection:order","phx_join",{}]"#.to_owned(),
    ))
    .await
    .map_err(|e| e.to_string())?;
    frame_where(&mut ws, |t| {
        t.starts_with(r#"["w","w","collection:order","phx_reply""#)
    })
    .await?;
    let shell = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
    shell
        .busy_timeout(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let (id, uuid): (i64, String) = shell
        .query_row(
            r#"SELECT id, uuid FROM "order" ORDER BY id DESC LIMIT 1"#,
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|e| e.to_string())?;
    let marker = format!(r#""uuid":"{uuid}""#);
    let mut times = Vec::new();
    for r in 0..repeats {
        let state = ["production", "completed", "dispatched"][r % 3];
        let sent = Instant::now();
        tokio::task::block_in_place(|| {
            shell.execute(
                r#"UPDATE "order" SET state = ?1 WHERE id = ?2"#,
                rusqlite::params![state, id],
            )
        })
        .map_err(|e| format!("foreign update: {e}"))?;
        let state_marker = format!(r#""state":"{state}""#);
        frame_where(&mut ws, |t| {
            t.contains(&marker) && t.contains(&state_marker)
        })
        .await?;
        times.push(sent.elapsed().as_nanos() as u64);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = ws.close(None).await;
    Ok(Stats::of_ns(times))
}

/// How many past orders the window control point gets: as many as the school year's
/// no-options join sent, when that is well above what the empty database's sent.
fn window_control_size(points: &[HistoryPoint]) -> Option<u64> {
    let empty = points.iter().find(|p| p.orders == 0)?;
    let year = school_year(points)?;
    let records = year.join_default_records as u64;
    (records as f64 > 1.1 * empty.join_default_records as f64).then_some(records)
}

/// The point issue 14 judges: the smallest history of at least a school year.
fn school_year(points: &[HistoryPoint]) -> Option<&HistoryPoint> {
    points
        .iter()
        .filter(|p| p.orders >= SCHOOL_YEAR && !p.window_control)
        .min_by_key(|p| p.orders)
}

/// Issue 14's verdicts: at a school year of history, each per-operation figure within 1.2× of
/// the empty database's (backup and check may grow linearly and are not judged).
pub fn verdicts(run: &HistoryRun) -> Vec<Verdict> {
    let Some(empty) = run.points.iter().find(|p| p.orders == 0) else {
        return Vec::new();
    };
    let Some(year) = school_year(&run.points) else {
        return Vec::new();
    };
    let mut verdicts: Vec<Verdict> = figures(year)
        .into_iter()
        .zip(figures(empty))
        .map(|((name, at_year, lower_is_better), (_, at_empty, _))| {
            let r = if lower_is_better {
                at_year / at_empty.max(f64::MIN_POSITIVE)
            } else {
                at_empty / at_year.max(f64::MIN_POSITIVE)
            };
            Verdict {
                target: format!(
                    "history {} orders: {name} within {TARGET_RATIO}x of the empty database's",
                    year.orders
                ),
                figure: format!("{at_year:.2} vs {at_empty:.2} ({r:.2}x)"),
                met: r <= TARGET_RATIO,
            }
        })
        .collect();
    if let Some(control) = run.points.iter().find(|p| p.window_control) {
        // Per record: the two answers hold about as many records, not exactly as many.
        let per_record = |p: &HistoryPoint| {
            1000.0 * p.join_default.p50_ms / p.join_default_records.max(1) as f64
        };
        let (at_year, at_control) = (per_record(year), per_record(control));
        let r = at_year / at_control.max(f64::MIN_POSITIVE);
        verdicts.push(Verdict {
            target: format!(
                "history {} orders: join without options, per record, within {TARGET_RATIO}x \
                 of the same answer without the history behind it ({} past orders)",
                year.orders, control.orders
            ),
            figure: format!(
                "{at_year:.1} us/record ({} records) vs {at_control:.1} us/record ({} records) ({r:.2}x)",
                year.join_default_records, control.join_default_records
            ),
            met: r <= TARGET_RATIO,
        });
    }
    verdicts
}

/// The judged figures of one point: (name, value, whether lower is better).
pub fn figures(p: &HistoryPoint) -> Vec<(&'static str, f64, bool)> {
    vec![
        ("start to READY p50 (ms)", p.start_to_ready.p50_ms, true),
        (
            "RSS after start (MiB)",
            p.rss_after_start_kib as f64 / 1024.0,
            true,
        ),
        (
            "one order to subscribers p50 (ms)",
            p.socket_run.latency.p50_ms,
            true,
        ),
        ("order ack p50 (ms)", p.socket_run.ack.p50_ms, true),
        ("order ack p99 (ms)", p.socket_run.ack.p99_ms, true),
        ("orders/s", p.socket_run.orders_per_s, false),
        ("join today p50 (ms)", p.join_today.p50_ms, true),
        ("join without options p50 (ms)", p.join_default.p50_ms, true),
        ("HTTP list of today p50 (ms)", p.list_today.p50_ms, true),
        (
            "foreign write to subscriber p50 (ms)",
            p.foreign_write.p50_ms,
            true,
        ),
    ]
}

/// The history table on the terminal: one row per N.
pub fn print(run: &HistoryRun) {
    println!();
    println!("history (past orders in the file; p50 ms unless noted):");
    println!(
        "{:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8}",
        "orders",
        "ready",
        "RSS MiB",
        "1 order",
        "ack",
        "ack p99",
        "orders/s",
        "join today",
        "join {}",
        "list",
        "foreign",
        "backup s"
    );
    for p in &run.points {
        let orders = if p.window_control {
            format!("{}w", p.orders)
        } else {
            p.orders.to_string()
        };
        println!(
            "{:>9} {:>8.1} {:>8.1} {:>9.2} {:>8.2} {:>8.2} {:>9.0} {:>10.2} {:>8.2} {:>8.2} {:>8.1} {:>8.2}",
            orders,
            p.start_to_ready.p50_ms,
            p.rss_after_start_kib as f64 / 1024.0,
            p.socket_run.latency.p50_ms,
            p.socket_run.ack.p50_ms,
            p.socket_run.ack.p99_ms,
            p.socket_run.orders_per_s,
            p.join_today.p50_ms,
            p.join_default.p50_ms,
            p.list_today.p50_ms,
            p.foreign_write.p50_ms,
            p.backup_s,
        );
    }
}
