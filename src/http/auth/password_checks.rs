//! The bound on Argon2 work (SPEC 6): each password check holds ~19 MiB for its duration, so
//! at most `auth.password_checks` run at once (0: one fewer than the CPU cores, at least one) and at most
//! `auth.password_check_queue` wait for a turn. A check past both is refused at once
//! ([`Busy`] → 429), without hashing: a thousand parallel logins cost a thousand small
//! answers, not a thousand hashes.
//!
//! Invariant: a check's slot is released when its hash finishes, not when the request that
//! asked for it ends — a client that hangs up mid-check cannot free its slot while the hash
//! still holds its memory.
//!
//! Each check runs on a thread of its own at a lower priority ([`CHECK_NICENESS`]): under a
//! login flood the hashing takes what the café leaves, never the other way round (measured in
//! BENCHMARKS.md's hostile phase).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

/// The `nice` value a password-check thread sets for itself (unless the daemon already runs
/// at a higher one): the scheduler gives it about a tenth of a
/// normal thread's share when both want a core, and all of an idle one.
pub const CHECK_NICENESS: i32 = 10;

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

    /// Run `check` (a hash or a verification) on a low-priority thread of its own once a slot
    /// is free, or refuse at once when every slot, running and waiting, is taken.
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
        // if the request that asked for it is dropped meanwhile. A thread per check (at most
        // `running` of them) rather than tokio's blocking pool, whose threads also serve
        // database reads and must keep their normal priority.
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("password-check".into())
            .spawn(move || {
                let held = (ticket, permit);
                lower_this_threads_priority();
                let result = check();
                // The slot is free before the answer is: whoever reads the answer sees it so.
                drop(held);
                let _ = done.send(result);
            })
            .map_err(|_| Busy)?;
        result.await.map_err(|_| Busy)
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

/// Linux keeps a `nice` value per thread: raise this one's (a thread may always lower its
/// own priority). Elsewhere, or if refused, the check runs at normal priority.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
        let refused = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, CHECK_NICENESS)
        };
        if refused != 0 {
            tracing::debug!("could not lower a password check's priority");
        }
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

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn checks_run_at_a_lower_priority_than_the_daemon() {
        let checks = PasswordChecks::new(1, 0);
        // SAFETY: plain integers in and out.
        let nice =
            || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let inside = checks.run(nice).await.expect("a free slot");
        // setpriority sets the value: 10, or the daemon's own if it already runs nicer.
        assert_eq!(inside, CHECK_NICENESS.max(nice()));
    }

    #[test]
    fn zero_leaves_a_core_for_the_cafe() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let checks = PasswordChecks::new(0, 8).capacity - 8;
        assert_eq!(checks, cores.saturating_sub(1).max(1));
    }
}
