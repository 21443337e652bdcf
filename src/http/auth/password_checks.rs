//! The bound on Argon2 work (SPEC 6): each password check holds ~19 MiB for its duration, so
//! at most `auth.password_checks` run at once (0: one fewer than the CPU cores, at least one) and at most
//! `auth.password_check_queue` wait for a turn. A check past both is refused at once
//! ([`Busy`] → 429), without hashing: a thousand parallel logins cost a thousand small
//! answers, not a thousand hashes.
//!
//! Invariant: a check's slot is released when its hash finishes, not when the request that
//! asked for it ends — a client that hangs up mid-check cannot free its slot while the hash
//! still holds its memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

/// Every slot (running and waiting) is taken; the caller answers 429 at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Admission to the Argon2 work of one daemon.
#[derive(Debug)]
pub struct PasswordChecks {
    /// One permit per check allowed to run at once.
    running: Arc<Semaphore>,
    /// Checks admitted (running or waiting for a permit); never above `capacity`.
    admitted: Arc<AtomicUsize>,
    /// Running plus waiting: past this a check is [`Busy`].
    capacity: usize,
}

/// One admitted check; dropping it frees its place (running or waiting).
struct Ticket(Arc<AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One check fewer than the cores the daemon may run on (at least one): a login flood then
/// keeps at most all but one core hashing, and orders, screens and `/healthz` always have a
/// core of their own (measured in BENCHMARKS.md's hostile phase).
pub fn default_checks() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(1).max(1)
}

impl PasswordChecks {
    /// `checks` at once (0: [`default_checks`]), `queue` more may wait.
    pub fn new(checks: usize, queue: usize) -> PasswordChecks {
        let checks = match checks {
            0 => default_checks(),
            n => n,
        };
        PasswordChecks {
            running: Arc::new(Semaphore::new(checks)),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: checks.saturating_add(queue),
        }
    }

    /// Run `check` (a hash or a verification) on a blocking thread once a slot is free, or
    /// refuse at once when every slot, running and waiting, is taken.
    pub async fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let ticket = self.admit().ok_or(Busy)?;
        let permit = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| Busy)?;
        // The ticket and the permit go with the work: released when the hash is done, even
        // if the request that asked for it is dropped meanwhile.
        tokio::task::spawn_blocking(move || {
            let _held = (ticket, permit);
            check()
        })
        .await
        .map_err(|_| Busy)
    }

    fn admit(&self) -> Option<Ticket> {
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .ok()
            .map(|_| Ticket(Arc::clone(&self.admitted)))
    }

    /// Checks running or waiting now.
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_running_and_queue_checks_are_refused_at_once() {
        let checks = Arc::new(PasswordChecks::new(1, 2));
        // Hold the one running check until the others have been judged.
        let release = Arc::new(Barrier::new(2));
        let first = {
            let (checks, release) = (Arc::clone(&checks), Arc::clone(&release));
            tokio::spawn(async move { checks.run(move || release.wait()).await })
        };
        while checks.admitted() < 1 {
            tokio::task::yield_now().await;
        }
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let checks = Arc::clone(&checks);
                tokio::spawn(async move { checks.run(|| 7).await })
            })
            .collect();
        while checks.admitted() < 3 {
            tokio::task::yield_now().await;
        }
        for _ in 0..1000 {
            assert_eq!(checks.run(|| 0).await, Err(Busy));
        }
        release.wait();
        assert!(first.await.unwrap().is_ok());
        for w in waiting {
            assert_eq!(w.await.unwrap(), Ok(7));
        }
        assert_eq!(checks.admitted(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_request_keeps_its_slot_until_the_hash_is_done() {
        let checks = Arc::new(PasswordChecks::new(1, 0));
        let release = Arc::new(Barrier::new(2));
        let running = {
            let (checks, release) = (Arc::clone(&checks), Arc::clone(&release));
            tokio::spawn(async move { checks.run(move || release.wait()).await })
        };
        while checks.admitted() < 1 {
            tokio::task::yield_now().await;
        }
        running.abort();
        let _ = running.await;
        // The hash is still running: its slot is still taken.
        assert_eq!(checks.run(|| 0).await, Err(Busy));
        release.wait();
        while checks.admitted() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(checks.run(|| 5).await, Ok(5));
    }

    #[test]
    fn zero_leaves_a_core_for_the_cafe() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let checks = PasswordChecks::new(0, 8).capacity - 8;
        assert_eq!(checks, cores.saturating_sub(1).max(1));
    }
}
