//! The equal-rate side-by-side (issue 14): Kaffediem and PocketBase under the same open-loop
//! load — orders sent on a fixed schedule whatever the server does (25 orders/s with 1 000
//! subscribers, 100 orders/s with 100) — measured by the same driver: end-to-end latency
//! (order sent → last subscriber has it), the ack, memory per subscriber, and the server's
//! CPU time from the first order to the last delivery per delivered event. At maximum rate
//! (the socket runs) the two servers do different amounts of work; here they do the same.
//!
//! On loopback the kernel runs the receiving side's TCP (and wakes the client) inside the
//! server's `write`, so each server is charged for its clients' receiving too. With
//! `--equal-rate-veth` each load is run a second time with the server in its own network
//! namespace behind a veth pair, pinned to CPU 0, and the clients' receive processing steered
//! to CPU 1 (RPS): as on a Pi whose screens are other machines, the server then pays for its
//! own sending (and for the ACKs it receives), not for its clients' receiving.

use std::net::{IpAddr, Ipv4Addr};
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
    /// Record a CPU profile of each server (`perf record -g`) during each of its equal-rate
    /// runs into this directory (`perf` must be installed), and report how much of its CPU
    /// went to the receive path the kernel ran inside it (`net_rx_action`: on loopback,
    /// mostly its clients' receiving).
    #[arg(long, value_name = "DIR")]
    pub equal_rate_perf: Option<PathBuf>,
    /// Also run each load with the server in its own network namespace behind a veth pair,
    /// pinned to CPU 0, with the clients' receive processing steered to CPU 1: the receiving
    /// side's kernel work is then not charged to the server (needs root, `ip`, `taskset`).
    #[arg(long)]
    pub equal_rate_veth: bool,
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
    /// Share of the server's profile samples under the kernel's receive path
    /// (`net_rx_action`), when profiled. On loopback this is mostly the clients' receiving
    /// (the rest: the ACKs for the server's own sockets).
    pub receive_share: Option<f64>,
    /// `cpu_us_per_event` without that share: what is left when every packet's receiving is
    /// charged elsewhere (a lower bound for a server whose screens are other machines).
    pub cpu_us_per_event_without_receive: Option<f64>,
}

/// Where the server runs, as the clients see it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// On loopback, like the clients: the receiving side's TCP runs in the server's writes.
    #[default]
    Loopback,
    /// In its own network namespace behind a veth pair, pinned to CPU 0; the clients' receive
    /// processing runs on CPU 1.
    Veth,
}

impl Network {
    fn label(self) -> &'static str {
        match self {
            Network::Loopback => "loopback",
            Network::Veth => "veth, server pinned to CPU 0, clients' receiving on CPU 1",
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct EqualRateRun {
    pub orders_per_s: u32,
    pub subscribers: usize,
    pub seconds: u32,
    pub network: Network,
    pub kaffediem: ServerAtRate,
    pub pocketbase: Option<ServerAtRate>,
    /// `perf.data` of the daemon during this run, when asked for.
    pub perf_data: Option<PathBuf>,
    /// `perf.data` of PocketBase during this run, when asked for.
    pub perf_data_pocketbase: Option<PathBuf>,
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
    let veth = match args.equal_rate_veth {
        true => Some(Veth::create()?),
        false => None,
    };
    let mut networks = vec![Network::Loopback];
    if veth.is_some() {
        networks.push(Network::Veth);
    }
    let mut runs = Vec::new();
    for (rate, subs) in loads {
        for &network in &networks {
            let veth = veth.as_ref().filter(|_| network == Network::Veth);
            runs.push(run_load(main, daemon, dir, rate, subs, seconds, network, veth).await?);
        }
    }
    Ok(runs)
}

/// Both servers under one load on one network.
#[allow(clippy::too_many_arguments)]
async fn run_load(
    main: &crate::RunArgs,
    daemon: &Path,
    dir: &Path,
    rate: u32,
    subs: usize,
    seconds: u32,
    network: Network,
    veth: Option<&Veth>,
) -> Result<EqualRateRun, String> {
    let args = &main.equal_rate;
    let net = match network {
        Network::Loopback => "",
        Network::Veth => "-veth",
    };
    eprintln!(
        "== equal rate: {rate} orders/s, {subs} subscribers, {seconds} s ({})",
        network.label()
    );
    let here = dir.join(format!("equal-{rate}-{subs}{net}"));
    std::fs::create_dir_all(&here).map_err(|e| e.to_string())?;
    let spec = DaemonSpec {
        binary: daemon,
        dir: &here,
        token: &main.token,
        max_sockets: subs + 1000,
        lift_address_limits: true,
    };
    let server = match veth {
        None => process::start_daemon(&spec)?,
        Some(veth) => {
            let mut cmd = process::daemon_command(&spec)?;
            cmd.env("KAFFEDIEM_BIND", veth.server_ip.to_string());
            process::spawn(veth.wrap(cmd), "daemon")?
        }
    };
    let placement = Placement::Http {
        addr: server.addr,
        token: main.token.clone(),
        item: crate::orders::pick_item(server.addr, &main.token).await?,
    };
    let perf_data = args
        .equal_rate_perf
        .as_ref()
        .map(|d| d.join(format!("perf-{rate}-{subs}{net}.data")));
    let perf_data_pb = main.pocketbase.as_ref().and(
        args.equal_rate_perf
            .as_ref()
            .map(|d| d.join(format!("perf-pb-{rate}-{subs}{net}.data"))),
    );
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
            let here = dir.join(format!("equal-pb-{rate}-{subs}{net}"));
            std::fs::create_dir_all(&here).map_err(|e| e.to_string())?;
            let server = match veth {
                None => crate::pocketbase::start(binary, &here).await?,
                Some(veth) => {
                    let host = IpAddr::V4(veth.server_ip);
                    crate::pocketbase::start_on(binary, &here, host, &|cmd| veth.wrap(cmd)).await?
                }
            };
            let placement = crate::pocketbase::placement(&server);
            let pb = drive(
                main,
                &server,
                &placement,
                true,
                rate,
                subs,
                seconds,
                perf_data_pb.as_deref(),
            )
            .await?;
            report("PocketBase", &pb);
            if let Err(e) = server.stop() {
                eprintln!("   pocketbase {e}");
            }
            Some(pb)
        }
        None => None,
    };
    Ok(EqualRateRun {
        orders_per_s: rate,
        subscribers: subs,
        seconds,
        network,
        kaffediem,
        pocketbase,
        perf_data,
        perf_data_pocketbase: perf_data_pb,
    })
}

/// A network namespace holding the server, joined to the host by a veth pair, with receive
/// steering (RPS): packets to the server are processed on CPU 0 (where it is pinned), packets
/// to the clients on CPU 1. Removed on drop.
struct Veth {
    ns: String,
    host_if: String,
    server_ip: Ipv4Addr,
}

impl Veth {
    fn create() -> Result<Veth, String> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus < 2 {
            return Err(
                "--equal-rate-veth needs two CPUs (server on 0, clients' receiving on 1)".into(),
            );
        }
        let id = std::process::id();
        let subnet = (id % 200 + 20) as u8;
        let veth = Veth {
            ns: format!("kdbench{id}"),
            host_if: format!("kdh{id}"),
            server_ip: Ipv4Addr::new(10, 213, subnet, 1),
        };
        let ns_if = format!("kds{id}");
        let host_ip = format!("10.213.{subnet}.2/24");
        let server_ip = format!("{}/24", veth.server_ip);
        let ns = veth.ns.as_str();
        let host_if = veth.host_if.as_str();
        let steps: Vec<Vec<&str>> = vec![
            vec!["ip", "netns", "add", ns],
            vec![
                "ip", "link", "add", host_if, "type", "veth", "peer", "name", &ns_if,
            ],
            vec!["ip", "link", "set", &ns_if, "netns", ns],
            vec!["ip", "addr", "add", &host_ip, "dev", host_if],
            vec!["ip", "link", "set", host_if, "up"],
            vec!["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"],
            vec![
                "ip", "netns", "exec", ns, "ip", "addr", "add", &server_ip, "dev", &ns_if,
            ],
            vec!["ip", "netns", "exec", ns, "ip", "link", "set", &ns_if, "up"],
        ];
        for step in steps {
            sh(&step)?;
        }
        // RPS masks: CPU 1 receives for the clients, CPU 0 for the server (in its namespace,
        // whose /sys `ip netns exec` mounts).
        std::fs::write(
            format!("/sys/class/net/{host_if}/queues/rx-0/rps_cpus"),
            "2",
        )
        .map_err(|e| format!("RPS on {host_if}: {e}"))?;
        let rps = format!("echo 1 > /sys/class/net/{ns_if}/queues/rx-0/rps_cpus");
        sh(&["ip", "netns", "exec", ns, "sh", "-c", &rps])?;
        Ok(veth)
    }

    /// `cmd` run in the namespace, pinned to CPU 0 (same process: both `ip netns exec` and
    /// `taskset` exec the command).
    fn wrap(&self, cmd: Command) -> Command {
        let mut out = Command::new("ip");
        out.args(["netns", "exec", &self.ns, "taskset", "-c", "0"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => out.env(key, value),
                None => out.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            out.current_dir(dir);
        }
        out
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = sh(&["ip", "link", "del", &self.host_if]);
        let _ = sh(&["ip", "netns", "del", &self.ns]);
    }
}

fn sh(argv: &[&str]) -> Result<(), String> {
    let status = Command::new(argv[0])
        .args(&argv[1..])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("{}: {e}", argv.join(" ")))?;
    match status.success() {
        true => Ok(()),
        false => Err(format!("`{}` failed ({status})", argv.join(" "))),
    }
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
    if let (Some(share), Some(without)) = (r.receive_share, r.cpu_us_per_event_without_receive) {
        eprintln!(
            "   {who}: {:.1} % of its samples under net_rx_action; without them {:.1} µs per delivered event",
            share * 100.0,
            without
        );
    }
}

/// The share of the samples in `data` with `net_rx_action` on their stack (`perf report`).
fn receive_share(data: &Path) -> Option<f64> {
    let out = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--children",
            "--sort",
            "sym",
            "-g",
            "none",
            "-i",
        ])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "    28.39%     1.19%  [k] net_rx_action": children first. No line: no such sample.
    let share = text
        .lines()
        .find(|l| l.trim_end().ends_with("[k] net_rx_action"))
        .map_or(Some(0.0), |l| {
            l.split_whitespace()
                .next()?
                .trim_end_matches('%')
                .parse::<f64>()
                .ok()
        })?;
    Some(share / 100.0)
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
    let receive = perf.and_then(receive_share);
    let latencies: Vec<u64> = (0..orders)
        .filter_map(|i| Some(tracker.arrivals(i)?.1.saturating_sub(sent[i])))
        .collect();
    let got: u64 = (0..orders).map(|i| u64::from(tracker.count(i))).sum();
    subscribers.close().await;
    let expected = (orders * subs) as u64;
    let per_event = cpu * 1000.0 / got.max(1) as f64;
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
        cpu_us_per_event: per_event,
        rss_idle_kib: idle_kib,
        rss_connected_kib: connected_kib,
        kib_per_subscriber: connected_kib.saturating_sub(idle_kib) as f64 / subs.max(1) as f64,
        receive_share: receive,
        cpu_us_per_event_without_receive: receive.map(|share| per_event * (1.0 - share)),
    })
}

/// Issue 14's equal-rate targets: CPU per delivered event ≤ 1/5 of PocketBase's, p99 ≤ 1/3.
pub fn verdicts(runs: &[EqualRateRun]) -> Vec<Verdict> {
    let mut out = Vec::new();
    for r in runs {
        let Some(pb) = &r.pocketbase else { continue };
        let k = &r.kaffediem;
        let load = format!(
            "{} orders/s, {} subscribers, {}",
            r.orders_per_s,
            r.subscribers,
            r.network.label()
        );
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
        if let (Some(kw), Some(pw)) = (
            k.cpu_us_per_event_without_receive,
            pb.cpu_us_per_event_without_receive,
        ) {
            out.push(Verdict {
                target: format!(
                    "equal rate ({load}), receive path (net_rx_action) taken out of both profiles: CPU per delivered event <= 1/5 of PocketBase's"
                ),
                figure: format!("{kw:.1} vs {pw:.1} µs ({:.2}x)", kw / pw.max(f64::MIN_POSITIVE)),
                met: kw * 5.0 <= pw && k.deliveries_missing == 0,
            });
        }
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
