//! The equal-rate side-by-side (issue 14): Kaffediem and PocketBase under the same open-loop
//! load — orders sent on a fixed schedule whatever the server does (25 orders/s with 1 000
//! subscribers, 100 orders/s with 100) — measured by the same driver: end-to-end latency
//! (order sent → last subscriber has it), the ack, memory per subscriber, and the server's
//! CPU time from the first order to the last delivery per delivered event. At maximum rate
//! (the socket runs) the two servers do different amounts of work; here they do the same.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;

use crate::orders::{Placement, Placer};
use crate::process::{self, DaemonSpec, Server};
use crate::report::{Stats, Verdict};
use crate::subscribers::{self, Tracker};

/// Issue 14's loads: (orders per second, subscribers).
const LOADS: &[(u32, usize)] = &[(25, 1000), (100, 100)];
/// Connections placing the scheduled orders: enough that a slow ack never delays the next
/// order's send (open loop).
const SENDERS: usize = 16;

#[derive(clap::Args)]
pub struct EqualRateArgs {
    /// Run the equal-rate comparison (Kaffediem, and PocketBase with `--pocketbase`).
    #[arg(long)]
    pub equal_rate: bool,
    /// Run only the equal-rate comparison.
    #[arg(long)]
    pub equal_rate_only: bool,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 20)]
    pub equal_rate_seconds: u32,
    /// Record a CPU profile of the daemon (`perf record -g`) during each of its equal-rate
    /// runs into this directory (`perf` must be installed).
    #[arg(long, value_name = "DIR")]
    pub equal_rate_perf: Option<PathBuf>,
}

impl EqualRateArgs {
    pub fn wanted(&self) -> bool {
        self.equal_rate || self.equal_rate_only
    }
}

/// One server under one load.
#[derive(Debug, Default, Serialize)]
pub struct ServerAtRate {
    pub orders: usize,
    /// Orders per second actually sent (the schedule held if this is the target rate).
    pub sent_per_s: f64,
    /// Order sent → the last subscriber has it.
    pub latency: Stats,
    pub ack: Stats,
    pub deliveries_expected: u64,
    pub deliveries_missing: u64,
    /// Server CPU (user + system) from the first order to the last delivery.
    pub cpu_ms: f64,
    /// `cpu_ms` ÷ deliveries received, in microseconds.
    pub cpu_us_per_event: f64,
    pub rss_idle_kib: u64,
    pub rss_connected_kib: u64,
    pub kib_per_subscriber: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct EqualRateRun {
    pub orders_per_s: u32,
    pub subscribers: usize,
    pub seconds: u32,
    pub kaffediem: ServerAtRate,
    pub pocketbase: Option<ServerAtRate>,
    /// `perf.data` of the daemon during this run, when asked for.
    pub perf_data: Option<PathBuf>,
}

pub async fn run(
    main: &crate::RunArgs,
    daemon: &Path,
    dir: &Path,
) -> Result<Vec<EqualRateRun>, String> {
    let args = &main.equal_rate;
    let (loads, seconds): (Vec<(u32, usize)>, u32) = if main.smoke {
        (vec![(20, 10)], 1)
    } else {
        (LOADS.to_vec(), args.equal_rate_seconds)
    };
    let mut runs = Vec::new();
    for (rate, subs) in loads {
        eprintln!("== equal rate: {rate} orders/s, {subs} subscribers, {seconds} s");
        let here = dir.join(format!("equal-{rate}-{subs}"));
        std::fs::create_dir_all(&here).map_err(|e| e.to_string())?;
        let spec = DaemonSpec {
            binary: daemon,
            dir: &here,
            token: &main.token,
            max_sockets: subs + 1000,
            lift_address_limits: true,
        };
        let server = process::start_daemon(&spec)?;
        let placement = Placement::Http {
            addr: server.addr,
            token: main.token.clone(),
            item: crate::orders::pick_item(server.addr, &main.token).await?,
        };
        let perf_data = args
            .equal_rate_perf
            .as_ref()
            .map(|d| d.join(format!("perf-{rate}-{subs}.data")));
        let kaffediem = drive(
            main,
            &server,
            &placement,
            false,
            rate,
            subs,
            seconds,
            perf_data.as_deref(),
        )
        .await?;
        report("Kaffediem", &kaffediem);
        if let Err(e) = server.stop() {
            eprintln!("   the daemon {e}");
        }
        let pocketbase = match &main.pocketbase {
            Some(binary) => {
                let here = dir.join(format!("equal-pb-{rate}-{subs}"));
                std::fs::create_dir_all(&here).map_err(|e| e.to_string())?;
                let server = crate::pocketbase::start(binary, &here).await?;
                let placement = crate::pocketbase::placement(&server);
                let pb = drive(main, &server, &placement, true, rate, subs, seconds, None).await?;
                report("PocketBase", &pb);
                if let Err(e) = server.stop() {
                    eprintln!("   pocketbase {e}");
                }
                Some(pb)
            }
            None => None,
        };
        runs.push(EqualRateRun {
            orders_per_s: rate,
            subscribers: subs,
            seconds,
            kaffediem,
            pocketbase,
            perf_data,
        });
    }
    Ok(runs)
}

fn report(who: &str, r: &ServerAtRate) {
    eprintln!(
        "   {who}: e2e p50 {:.2} / p99 {:.2} ms, CPU {:.2} s = {:.1} µs per delivered event, {:.1} KiB per subscriber, {} missing",
        r.latency.p50_ms,
        r.latency.p99_ms,
        r.cpu_ms / 1000.0,
        r.cpu_us_per_event,
        r.kib_per_subscriber,
        r.deliveries_missing
    );
}

/// `perf record` attached to `pid` until dropped (SIGINT, so it writes its file).
struct Perf(Child);

impl Perf {
    fn attach(pid: u32, out: &Path) -> Result<Perf, String> {
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        Command::new("perf")
            .args(["record", "-F", "499", "-g", "-p", &pid.to_string(), "-o"])
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Perf)
            .map_err(|e| format!("cannot run perf: {e}"))
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid, not yet reaped.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = self.0.wait();
    }
}

/// Subscribers, then `rate × seconds` orders on schedule, then every delivery counted.
#[allow(clippy::too_many_arguments)]
async fn drive(
    main: &crate::RunArgs,
    server: &Server,
    placement: &Placement,
    pocketbase: bool,
    rate: u32,
    subs: usize,
    seconds: u32,
    perf: Option<&Path>,
) -> Result<ServerAtRate, String> {
    tokio::time::sleep(crate::SETTLE).await;
    let idle = server.rss();
    let orders = (rate * seconds) as usize;
    let nonce = format!("eq-{}-{rate}-{}-", std::process::id(), pocketbase as u8);
    let tracker = Tracker::new(&nonce, orders);
    let subscribers = match pocketbase {
        true => crate::pocketbase::subscribe(server.addr, subs, Arc::clone(&tracker)).await?,
        false => {
            subscribers::open(
                server.addr,
                subs,
                subscribers::ORDER_SCREEN,
                Arc::clone(&tracker),
            )
            .await?
        }
    };
    tokio::time::sleep(crate::quiet(main)).await;
    let connected = server.rss();

    let profile = match perf {
        Some(out) => Some(Perf::attach(server.pid, out)?),
        None => None,
    };
    let cpu_before = server.cpu_ms();
    let start = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut senders = JoinSet::new();
    for k in 0..SENDERS {
        let (placement, nonce, tracker) = (placement.clone(), nonce.clone(), Arc::clone(&tracker));
        senders.spawn(async move {
            let mut placer = Placer::open(&placement).await?;
            let mut times = Vec::new();
            for i in (k..orders).step_by(SENDERS) {
                tokio::time::sleep_until(start + interval * i as u32).await;
                let sent = tracker.now_ns();
                placer.place(&nonce, i).await?;
                times.push((i, sent, tracker.now_ns()));
            }
            Ok::<_, String>(times)
        });
    }
    let mut sent = vec![0u64; orders];
    let mut acks = Vec::with_capacity(orders);
    while let Some(done) = senders.join_next().await {
        for (i, s, a) in done.map_err(|e| e.to_string())?? {
            sent[i] = s;
            acks.push(a - s);
        }
    }
    let sending = start.elapsed().as_secs_f64();
    for i in 0..orders {
        if !tracker
            .wait_for(i, subs as u32, crate::DELIVERY_TIMEOUT)
            .await
        {
            eprintln!("   order {i} did not reach every subscriber in time");
            break;
        }
    }
    let cpu = cpu_before.zip(server.cpu_ms()).map_or(0.0, |(a, b)| b - a);
    drop(profile);
    let latencies: Vec<u64> = (0..orders)
        .filter_map(|i| Some(tracker.arrivals(i)?.1.saturating_sub(sent[i])))
        .collect();
    let got: u64 = (0..orders).map(|i| u64::from(tracker.count(i))).sum();
    subscribers.close().await;
    let expected = (orders * subs) as u64;
    let (idle_kib, connected_kib) = (
        idle.map_or(0, |r| r.now_kib),
        connected.map_or(0, |r| r.now_kib),
    );
    Ok(ServerAtRate {
        orders,
        sent_per_s: orders as f64 / sending.max(f64::MIN_POSITIVE),
        latency: Stats::of_ns(latencies),
        ack: Stats::of_ns(acks),
        deliveries_expected: expected,
        deliveries_missing: expected.saturating_sub(got),
        cpu_ms: cpu,
        cpu_us_per_event: cpu * 1000.0 / got.max(1) as f64,
        rss_idle_kib: idle_kib,
        rss_connected_kib: connected_kib,
        kib_per_subscriber: connected_kib.saturating_sub(idle_kib) as f64 / subs.max(1) as f64,
    })
}

/// Issue 14's equal-rate targets: CPU per delivered event ≤ 1/5 of PocketBase's, p99 ≤ 1/3.
pub fn verdicts(runs: &[EqualRateRun]) -> Vec<Verdict> {
    let mut out = Vec::new();
    for r in runs {
        let Some(pb) = &r.pocketbase else { continue };
        let k = &r.kaffediem;
        let load = format!("{} orders/s, {} subscribers", r.orders_per_s, r.subscribers);
        out.push(Verdict {
            target: format!("equal rate ({load}): CPU per delivered event <= 1/5 of PocketBase's"),
            figure: format!(
                "{:.1} vs {:.1} µs ({:.2}x)",
                k.cpu_us_per_event,
                pb.cpu_us_per_event,
                k.cpu_us_per_event / pb.cpu_us_per_event.max(f64::MIN_POSITIVE)
            ),
            met: k.cpu_us_per_event * 5.0 <= pb.cpu_us_per_event && k.deliveries_missing == 0,
        });
        out.push(Verdict {
            target: format!("equal rate ({load}): e2e p99 <= 1/3 of PocketBase's"),
            figure: format!(
                "{:.2} vs {:.2} ms ({:.2}x)",
                k.latency.p99_ms,
                pb.latency.p99_ms,
                k.latency.p99_ms / pb.latency.p99_ms.max(f64::MIN_POSITIVE)
            ),
            met: k.latency.p99_ms * 3.0 <= pb.latency.p99_ms && k.deliveries_missing == 0,
        });
    }
    out
}
