//! The hostile phase's figures: one row per attack beside the quiet run, the budget verdict
//! per attack (issue 10: under any one attack from one client, RSS stays below idle + 64 MiB
//! and the order-ack p99 within 3× of the quiet run), the table and the JSON.
//!
//! "Idle" for the RSS budget is the daemon as the attack found it: serving the café's screen
//! and till (the quiet run's 2 000-order snapshot is already in its heap, ~50 MiB above the
//! bare process), plus whatever the allocator kept from earlier attacks. The attack is judged
//! by what it adds to that (`rss_peak_kib - rss_start_kib`); the bare process's RSS is printed
//! beside it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::report::{Stats, Verdict};

/// RSS an attack may add to the idle daemon.
pub const RSS_BUDGET_KIB: u64 = 64 * 1024;
/// How much slower than in the quiet run the order-ack p99 may get under an attack.
pub const ACK_BUDGET_FACTOR: f64 = 3.0;

#[derive(Debug, Default, Serialize)]
pub struct HostileRun {
    /// How long the quiet run and each attack lasted (the attack's deadline).
    pub seconds_per_phase: f64,
    /// Orders in the database before the daemon started (what an unfiltered
    /// `collection:order` join or order list has to read).
    pub seeded_orders: usize,
    pub attacker_address: String,
    pub probe_address: String,
    pub rss_idle_kib: u64,
    /// What an attack may add to the RSS it found (64 MiB).
    pub rss_budget_kib: u64,
    /// An attack was stopped early once the daemon's RSS passed this (the machine's safety).
    pub rss_cap_kib: u64,
    pub quiet: PhaseRun,
    pub attacks: Vec<PhaseRun>,
}

/// The probes' view of one phase (the quiet run or one attack), and the attacker's.
#[derive(Debug, Default, Serialize)]
pub struct PhaseRun {
    pub attack: String,
    /// What the attacker did, in words and counts.
    pub what: String,
    pub seconds: f64,
    /// Largest `VmRSS` sampled during the phase (sampled at a fixed interval: `VmHWM` only
    /// ever grows, so it cannot tell one phase's peak from an earlier one's).
    pub rss_peak_kib: u64,
    /// `VmRSS` when the phase began (the daemon keeps much of what earlier phases made it
    /// allocate): peak − start is what this phase added.
    pub rss_start_kib: u64,
    pub rss_samples: u64,
    /// `GET /healthz` from 127.0.0.1 every 50 ms; a failed probe counts at the time it took.
    pub healthz: Stats,
    pub healthz_failed: u64,
    /// A logged-in customer's `POST /api/collections/order/records` every 50 ms: request →
    /// answer; failed placements count at the time they took.
    pub ack: Stats,
    pub orders_failed: u64,
    pub orders_acked: usize,
    /// The customer's acknowledged orders that never reached the healthy screen (waited for
    /// up to 10 s after the phase).
    pub deliveries_missed: u64,
    /// The healthy screen had been closed by the daemon by the end of the phase.
    pub screen_closed: bool,
    /// Outcome → count, as the attacker saw it.
    pub attacker: BTreeMap<String, u64>,
    pub stopped_at_rss_cap: bool,
    /// Seconds from the attack's end until a fresh `/healthz` was answered again.
    pub recovery_s: Option<f64>,
    pub daemon_alive: bool,
    /// The daemon did not answer within a minute after the attack (or had exited) and was
    /// restarted on the same database for the next attack.
    pub daemon_restarted: bool,
    pub rss_within_budget: Option<bool>,
    pub ack_within_budget: Option<bool>,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl HostileRun {
    /// The budget verdict of each attack against the quiet run.
    pub fn judge(&mut self) {
        let quiet_p99 = self.quiet.ack.p99_ms;
        for a in &mut self.attacks {
            a.rss_within_budget =
                Some(a.rss_peak_kib.saturating_sub(a.rss_start_kib) < RSS_BUDGET_KIB);
            a.ack_within_budget = Some(
                a.ack.n > 0
                    && a.orders_failed == 0
                    && a.ack.p99_ms <= ACK_BUDGET_FACTOR * quiet_p99,
            );
        }
    }

    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut verdicts = Vec::new();
        for a in &self.attacks {
            verdicts.push(Verdict {
                target: format!("hostile {}: RSS the attack adds < 64 MiB", a.attack),
                figure: format!(
                    "+{:.1} MiB (peak {:.1} MiB){}",
                    mib(a.rss_peak_kib.saturating_sub(a.rss_start_kib)),
                    mib(a.rss_peak_kib),
                    if a.stopped_at_rss_cap {
                        " (stopped at the RSS cap)"
                    } else {
                        ""
                    }
                ),
                met: a.rss_within_budget == Some(true),
            });
            verdicts.push(Verdict {
                target: format!("hostile {}: order-ack p99 <= 3x the quiet run", a.attack),
                figure: format!(
                    "{:.2} ms vs {:.2} ms quiet ({} orders failed)",
                    a.ack.p99_ms, self.quiet.ack.p99_ms, a.orders_failed
                ),
                met: a.ack_within_budget == Some(true),
            });
        }
        verdicts
    }

    pub fn print(&self) {
        println!(
            "\nhostile phase: attacks from {} for {:.0} s each, probes from {}; {} orders seeded; \
             bare daemon RSS {:.1} MiB; budget: an attack adds < {:.1} MiB",
            self.attacker_address,
            self.seconds_per_phase,
            self.probe_address,
            self.seeded_orders,
            mib(self.rss_idle_kib),
            mib(RSS_BUDGET_KIB),
        );
        println!(
            "{:>15} | {:>9} {:>7} | {:>8} {:>8} {:>6} | {:>8} {:>8} {:>6} | {:>6} | {:>8} | {:>6} {:>6}",
            "attack",
            "RSS MiB",
            "+MiB",
            "hz p50",
            "hz p99",
            "failed",
            "ack p50",
            "ack p99",
            "failed",
            "missed",
            "recovery",
            "RSS",
            "ack"
        );
        let ok = |v: Option<bool>| match v {
            Some(true) => "ok",
            Some(false) => "OVER",
            None => "—",
        };
        for p in std::iter::once(&self.quiet).chain(&self.attacks) {
            println!(
                "{:>15} | {:>9.1} {:>7.1} | {:>8.2} {:>8.2} {:>6} | {:>8.2} {:>8.2} {:>6} | {:>6} | {:>8} | {:>6} {:>6}",
                p.attack,
                mib(p.rss_peak_kib),
                mib(p.rss_peak_kib.saturating_sub(p.rss_start_kib)),
                p.healthz.p50_ms,
                p.healthz.p99_ms,
                p.healthz_failed,
                p.ack.p50_ms,
                p.ack.p99_ms,
                p.orders_failed,
                p.deliveries_missed,
                p.recovery_s.map_or("—".into(), |s| format!("{s:.1} s")),
                ok(p.rss_within_budget),
                ok(p.ack_within_budget),
            );
        }
        for p in &self.attacks {
            let seen: Vec<String> = p
                .attacker
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            println!("  {} ({}): {}", p.attack, p.what, seen.join("; "));
            let notes: Vec<&str> = [
                (p.stopped_at_rss_cap, "stopped early at the RSS cap"),
                (p.screen_closed, "the daemon closed the healthy screen"),
                (!p.daemon_alive, "THE DAEMON EXITED"),
                (
                    p.recovery_s.is_none(),
                    "no /healthz answer within a minute after it",
                ),
                (
                    p.daemon_restarted,
                    "the daemon was restarted for the next attack",
                ),
            ]
            .into_iter()
            .filter_map(|(on, note)| on.then_some(note))
            .collect();
            if !notes.is_empty() {
                println!("      {}", notes.join("; "));
            }
        }
    }
}
