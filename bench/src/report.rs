//! Figures: percentiles, the printed table, the JSON file, and the SPEC 11 verdicts.

use serde::Serialize;

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Stats {
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Stats {
    pub fn of_ns(mut samples: Vec<u64>) -> Stats {
        if samples.is_empty() {
            return Stats::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let idx = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[idx] as f64 / 1e6
        };
        Stats {
            n: samples.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: *samples.last().unwrap_or(&0) as f64 / 1e6,
        }
    }
}

/// Everything measured at one socket count.
#[derive(Debug, Default, Serialize)]
pub struct SocketRun {
    pub sockets: usize,
    pub ramp_s: f64,
    pub rss_idle_kib: u64,
    pub rss_connected_kib: u64,
    pub rss_peak_kib: u64,
    pub kib_per_socket: f64,
    /// RSS once every order has reached every subscriber and things settled, the sockets
    /// still open: what the sockets cost after traffic (buffers a burst left behind).
    pub rss_after_kib: u64,
    pub kib_per_socket_after: f64,
    /// One order at a time: request → last subscriber.
    pub latency: Stats,
    /// The same orders: first subscriber → last subscriber (the fan-out alone, whatever
    /// the placement path costs).
    pub spread: Stats,
    /// The same orders: request → acknowledgement.
    pub ack: Stats,
    /// Each one-at-a-time order's latency, in placement order (for finding hiccups).
    pub samples_ms: Vec<f64>,
    /// The server's CPU time (user + system) per one-at-a-time order: what delivering one
    /// order to N sockets costs the daemon itself, whatever the clients cost.
    pub cpu_ms_per_order: Option<f64>,
    /// Order frames as received (bytes).
    pub frame_bytes: usize,
    pub throughput_orders: usize,
    pub writers: usize,
    pub orders_per_s: f64,
    /// Under the concurrent load: request → last subscriber.
    pub loaded_latency: Stats,
    /// (order, subscriber) deliveries expected and missing, over both phases.
    pub deliveries_expected: u64,
    pub deliveries_missing: u64,
    pub strays: u64,
    /// Subscribers the daemon closed during the run (e.g. 1013, slow consumer).
    pub closed_by_server: u64,
    pub floor: Option<FloorRun>,
    /// PocketBase doing the same work (with `--pocketbase`).
    pub pocketbase: Option<Box<SocketRun>>,
}

/// The bare broadcast server at the same socket count.
#[derive(Debug, Default, Serialize)]
pub struct FloorRun {
    pub latency: Stats,
    pub spread: Stats,
    pub cpu_ms_per_order: Option<f64>,
    pub rss_idle_kib: u64,
    pub rss_connected_kib: u64,
    pub kib_per_socket: f64,
    pub deliveries_missing: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub placement: String,
    pub runs: Vec<SocketRun>,
    pub raw_sqlite_inserts_per_s: Option<f64>,
    pub writer_in_process_orders_per_s: Option<f64>,
    pub writer_in_process_writers: usize,
    pub menus: Vec<MenuRun>,
    pub menu_screens: Option<MenuScreensRun>,
    /// The hostile phase (`--hostile`): each attack beside a quiet run.
    pub hostile: Option<crate::hostile_report::HostileRun>,
    /// The history phase (`--history`): the same phases with N past orders in the file.
    pub history: Option<crate::history::HistoryRun>,
    /// The SD-card phase (`--sd-fsync-ms`): one run per simulated fsync time.
    pub sd_card: Vec<crate::sdcard::SdRun>,
    /// The equal-rate comparison (`--equal-rate`): the same open-loop load on both servers.
    pub equal_rate: Vec<crate::equal_rate::EqualRateRun>,
    pub verdicts: Vec<Verdict>,
}

/// Menu boards: sockets joined to `collection:menu` of a daemon holding the SPEC 11 menu,
/// which gets item renames (each re-sends the whole menu to every board).
#[derive(Debug, Default, Serialize)]
pub struct MenuScreensRun {
    pub screens: usize,
    pub edits: usize,
    /// The menu frame as received (bytes).
    pub menu_bytes: usize,
    pub rss_idle_kib: u64,
    pub rss_connected_kib: u64,
    /// After the edits, every board having received every menu, settled.
    pub rss_after_kib: u64,
    /// What each board kept after the menus went out: (after − connected) / screens.
    pub kib_per_screen_after_menus: f64,
    /// Rename request → last board received the new menu.
    pub latency: Stats,
    pub deliveries_missing: u64,
}

/// Median time to build the menu of 200 items / 20 keys / 80 values from the database, and
/// to build + encode its `collection:menu` broadcast.
#[derive(Debug, Default, Serialize)]
pub struct MenuRun {
    pub keys_per_category: i64,
    pub build_ms: f64,
    pub encode_ms: f64,
    pub bytes: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub mem_total_kib: u64,
}

impl Machine {
    pub fn here() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
                .unwrap_or_default(),
            mem_total_kib: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub target: String,
    pub figure: String,
    pub met: bool,
}

fn cpu(ms: Option<f64>) -> String {
    ms.map_or("—".into(), |ms| format!("{ms:.2} ms"))
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "—".into()
    }
}

impl Report {
    pub fn print(&self) {
        let m = &self.machine;
        println!(
            "\nmachine: {} cores, {}, {} MiB RAM; orders placed over {}",
            m.nproc,
            m.cpu,
            m.mem_total_kib / 1024,
            self.placement
        );
        if !self.runs.is_empty() {
            self.print_runs();
        }
        self.print_once_per_run();
    }

    fn print_runs(&self) {
        println!(
            "\n{:>6} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>9} {:>9} | {:>9} {:>9} | {:>8} | {:>8}",
            "N", "p50 ms", "p99 ms", "max ms", "idle KiB", "conn KiB", "peak KiB", "KiB/sock",
            "floor K/s", "floor p50", "floor p99", "orders/s", "missing"
        );
        for r in &self.runs {
            let f = r.floor.as_ref();
            println!(
                "{:>6} | {:>8.2} {:>8.2} {:>8.2} | {:>8} {:>8} {:>8} | {:>9.2} {:>9} | {:>9} {:>9} | {:>8.0} | {:>8}",
                r.sockets,
                r.latency.p50_ms,
                r.latency.p99_ms,
                r.latency.max_ms,
                r.rss_idle_kib,
                r.rss_connected_kib,
                r.rss_peak_kib,
                r.kib_per_socket,
                f.map_or("—".into(), |f| format!("{:.2}", f.kib_per_socket)),
                f.map_or("—".into(), |f| format!("{:.2}", f.latency.p50_ms)),
                f.map_or("—".into(), |f| format!("{:.2}", f.latency.p99_ms)),
                r.orders_per_s,
                r.deliveries_missing,
            );
        }
        println!();
        for r in &self.runs {
            println!(
                "N = {}: ramp {:.1} s; frame {} B; under load ({} orders, {} writers): {:.0} orders/s, \
                 delivery p50 {:.2} ms / p99 {:.2} ms / max {:.2} ms",
                r.sockets, r.ramp_s, r.frame_bytes, r.throughput_orders, r.writers, r.orders_per_s,
                r.loaded_latency.p50_ms, r.loaded_latency.p99_ms, r.loaded_latency.max_ms
            );
            if r.closed_by_server > 0 {
                println!(
                    "        {} subscribers were closed by the daemon",
                    r.closed_by_server
                );
            }
            println!(
                "        after the orders (all delivered, settled): RSS {} KiB = {:.2} KiB per socket",
                r.rss_after_kib, r.kib_per_socket_after
            );
            println!(
                "        one at a time: ack p50 {:.2} ms; first → last subscriber p50 {:.2} ms / p99 {:.2} ms; server CPU {} per order",
                r.ack.p50_ms,
                r.spread.p50_ms,
                r.spread.p99_ms,
                cpu(r.cpu_ms_per_order)
            );
            if let Some(f) = &r.floor {
                println!(
                    "        bare broadcast: first → last p50 {:.2} ms / p99 {:.2} ms; server CPU {} per frame",
                    f.spread.p50_ms,
                    f.spread.p99_ms,
                    cpu(f.cpu_ms_per_order)
                );
                println!(
                    "        vs bare broadcast: p50 {}, p99 {}, KiB/socket {}",
                    ratio(r.latency.p50_ms, f.latency.p50_ms),
                    ratio(r.latency.p99_ms, f.latency.p99_ms),
                    ratio(r.kib_per_socket, f.kib_per_socket)
                );
            }
            if let Some(pb) = &r.pocketbase {
                println!(
                    "        PocketBase: p50 {:.2} ms / p99 {:.2} ms, {:.2} KiB/subscriber, {:.0} orders/s, missing {} \
                     -> Kaffediem: {} the throughput, {} the p99, {} the memory per subscriber",
                    pb.latency.p50_ms, pb.latency.p99_ms, pb.kib_per_socket, pb.orders_per_s,
                    pb.deliveries_missing,
                    ratio(r.orders_per_s, pb.orders_per_s),
                    ratio(r.latency.p99_ms, pb.latency.p99_ms),
                    ratio(r.kib_per_socket, pb.kib_per_socket)
                );
            }
            if let Some(raw) = self.raw_sqlite_inserts_per_s {
                println!(
                    "        vs raw SQLite ({raw:.0} durable inserts/s): orders/s {}",
                    ratio(r.orders_per_s, raw)
                );
            }
        }
    }

    fn print_once_per_run(&self) {
        if let (Some(raw), Some(w)) = (
            self.raw_sqlite_inserts_per_s,
            self.writer_in_process_orders_per_s,
        ) {
            println!(
                "writer in process ({} writers): {w:.0} orders/s = {} raw SQLite ({raw:.0}/s)",
                self.writer_in_process_writers,
                ratio(w, raw)
            );
        }
        for m in &self.menus {
            println!(
                "menu 200 items / 20 keys / 80 values, {} keys per category: build {:.3} ms + encode {:.3} ms = {:.3} ms ({} bytes)",
                m.keys_per_category, m.build_ms, m.encode_ms, m.build_ms + m.encode_ms, m.bytes
            );
        }
        if let Some(b) = &self.menu_screens {
            println!(
                "menu boards: {} sockets on collection:menu, {} renames of a {} B menu: RSS idle {} / connected {} / after {} KiB = {:.2} KiB kept per board; \
                 rename -> last board p50 {:.2} ms / max {:.2} ms; missing {}",
                b.screens, b.edits, b.menu_bytes, b.rss_idle_kib, b.rss_connected_kib, b.rss_after_kib,
                b.kib_per_screen_after_menus, b.latency.p50_ms, b.latency.max_ms, b.deliveries_missing
            );
        }
        if let Some(h) = &self.hostile {
            h.print();
        }
        println!();
        for v in &self.verdicts {
            println!(
                "{} {}: {}",
                if v.met { "MET    " } else { "NOT MET" },
                v.target,
                v.figure
            );
        }
    }

    /// SPEC 11, for the socket counts that were run.
    pub fn judge(&mut self) {
        let mut verdicts = Vec::new();
        if let Some(r) = self.runs.iter().find(|r| r.sockets == 10_000) {
            verdicts.push(Verdict {
                target: "RSS growth <= 10 KiB per socket (10 000 sockets, order+status)".into(),
                figure: format!("{:.2} KiB/socket", r.kib_per_socket),
                met: r.kib_per_socket <= 10.0,
            });
            verdicts.push(Verdict {
                target: "idle RSS <= 15 MiB".into(),
                figure: format!("{:.1} MiB", r.rss_idle_kib as f64 / 1024.0),
                met: r.rss_idle_kib <= 15 * 1024,
            });
            verdicts.push(Verdict {
                target: "one order -> 10 000 sockets p50 <= 20 ms".into(),
                figure: format!("{:.2} ms", r.latency.p50_ms),
                met: r.latency.p50_ms <= 20.0 && r.deliveries_missing == 0,
            });
            verdicts.push(Verdict {
                target: "one order -> 10 000 sockets p99 <= 60 ms".into(),
                figure: format!("{:.2} ms", r.latency.p99_ms),
                met: r.latency.p99_ms <= 60.0 && r.deliveries_missing == 0,
            });
        }
        if let (Some(r), Some(raw)) = (
            self.runs.iter().find(|r| r.sockets == 1_000),
            self.raw_sqlite_inserts_per_s,
        ) {
            verdicts.push(Verdict {
                target: "orders/s with 1 000 subscribers >= raw SQLite durable inserts/s".into(),
                figure: format!(
                    "{:.0} vs {raw:.0} ({})",
                    r.orders_per_s,
                    ratio(r.orders_per_s, raw)
                ),
                met: r.orders_per_s >= raw,
            });
        }
        if let Some((r, pb)) = self
            .runs
            .iter()
            .rev()
            .find_map(|r| r.pocketbase.as_deref().map(|pb| (r, pb)))
        {
            let n = r.sockets;
            verdicts.push(Verdict {
                target: format!("vs PocketBase at {n} subscribers: >= 5x the throughput"),
                figure: format!(
                    "{:.0} vs {:.0} orders/s ({})",
                    r.orders_per_s,
                    pb.orders_per_s,
                    ratio(r.orders_per_s, pb.orders_per_s)
                ),
                met: r.orders_per_s >= 5.0 * pb.orders_per_s,
            });
            verdicts.push(Verdict {
                target: format!("vs PocketBase at {n} subscribers: <= 1/5 of the p99 latency"),
                figure: format!(
                    "{:.2} vs {:.2} ms ({})",
                    r.latency.p99_ms,
                    pb.latency.p99_ms,
                    ratio(r.latency.p99_ms, pb.latency.p99_ms)
                ),
                met: r.latency.p99_ms * 5.0 <= pb.latency.p99_ms,
            });
            verdicts.push(Verdict {
                target: format!(
                    "vs PocketBase at {n} subscribers: <= 1/10 of the memory per subscriber"
                ),
                figure: format!(
                    "{:.2} vs {:.2} KiB ({})",
                    r.kib_per_socket,
                    pb.kib_per_socket,
                    ratio(r.kib_per_socket, pb.kib_per_socket)
                ),
                met: r.kib_per_socket * 10.0 <= pb.kib_per_socket,
            });
        }
        for m in &self.menus {
            verdicts.push(Verdict {
                target: format!(
                    "menu 200/20/80 ({} keys per category) build + encode < 1 ms",
                    m.keys_per_category
                ),
                figure: format!("{:.3} ms ({} KB)", m.build_ms + m.encode_ms, m.bytes / 1000),
                met: m.build_ms + m.encode_ms < 1.0,
            });
        }
        if let Some(h) = &self.hostile {
            verdicts.extend(h.verdicts());
        }
        if let Some(h) = &self.history {
            verdicts.extend(crate::history::verdicts(h));
        }
        verdicts.extend(crate::sdcard::verdicts(&self.sd_card));
        verdicts.extend(crate::equal_rate::verdicts(&self.equal_rate));
        self.verdicts = verdicts;
    }
}
