//! The allocator's settings ([`tune_allocator`]) and giving memory back after a burst. A burst
//! of orders to thousands of sockets allocates and frees many small blocks from several threads (queued frames, queues that grew); glibc keeps
//! the freed pages of its heaps resident until asked, so a Pi that served one busy moment
//! would carry its high-water mark all day (measured with 10 000 sockets after 1 000 orders:
//! 119 MB resident without a trim, 76 MB with; see `BENCHMARKS.md`). Once the sockets have
//! been quiet for a second or two after activity, `malloc_trim` hands those pages back.

use std::time::Duration;

/// How often activity is sampled; a trim follows the first quiet sample after activity.
const SAMPLE: Duration = Duration::from_secs(1);

/// Trim the heap whenever `activity` (a counter that moves with socket traffic) stood still
/// for one sample after it had moved. Returns `None` where the allocator needs no help.
pub fn spawn_trimmer(
    activity: impl Fn() -> u64 + Send + 'static,
) -> Option<tokio::task::JoinHandle<()>> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return None;
    }
    Some(tokio::spawn(run(activity, || async {
        // It holds the allocator's locks for a few milliseconds: not on a worker.
        let _ = tokio::task::spawn_blocking(trim).await;
    })))
}

async fn run<A, T, F>(activity: A, trim: T)
where
    A: Fn() -> u64,
    T: Fn() -> F,
    F: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(SAMPLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = activity();
    let mut moved = false;
    loop {
        tick.tick().await;
        let now = activity();
        if now != last {
            (last, moved) = (now, true);
        } else if std::mem::take(&mut moved) {
            trim().await;
        }
    }
}

/// Give large freed blocks back to the kernel. Argon2id allocates 19 MiB for every password
/// hash (a login, the first admin); with glibc's adaptive threshold the first such free raises
/// the mmap threshold, and from then on each thread's arena keeps ~19 MiB resident per hash
/// (measured: +19.5 MB RSS per login, 68 MB after three). A fixed 4 MiB threshold keeps those
/// blocks mmapped and unmapped on free; the trim threshold is what glibc's adaptive rule would
/// pick (twice that), so menu-sized buffers (~1 MB) are still reused rather than faulted in
/// afresh. At most two arenas: glibc's default (8 per core) gives every thread that ever
/// allocates (workers, the blocking pool's readers) a heap of its own, each holding its own
/// free pages; with two, sockets cost less (N = 100: 12.7–13.3 → 8.2–9.2 KiB per socket;
/// N = 1 000: 4.9–5.3 → 4.5–4.7) at the same CPU per order. Must run before any thread starts (the daemon's and the
/// bench's `main` call it first).
/// `BENCHMARKS.md` has the figures.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator() {
    // SAFETY: mallopt only adjusts allocator parameters; callers run it before other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    let started = std::time::Instant::now();
    // SAFETY: malloc_trim only returns free pages of the heaps to the kernel.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(elapsed = ?started.elapsed(), released = released != 0, "heap trimmed");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// One trim after each busy spell, none while busy or while idle.
    #[tokio::test(start_paused = true)]
    async fn trims_once_when_traffic_stops() {
        let counter = Arc::new(AtomicU64::new(0));
        let trims = Arc::new(AtomicU64::new(0));
        let (c, t) = (Arc::clone(&counter), Arc::clone(&trims));
        let task = tokio::spawn(run(
            move || c.load(Ordering::Relaxed),
            move || {
                t.fetch_add(1, Ordering::Relaxed);
                async {}
            },
        ));
        let step = |n: u32| tokio::time::sleep(SAMPLE * n);
        step(5).await;
        assert_eq!(trims.load(Ordering::Relaxed), 0, "idle from the start");
        for _ in 0..5 {
            counter.fetch_add(1, Ordering::Relaxed);
            step(1).await;
        }
        assert_eq!(trims.load(Ordering::Relaxed), 0, "busy");
        step(5).await;
        assert_eq!(trims.load(Ordering::Relaxed), 1, "once after the burst");
        counter.fetch_add(1, Ordering::Relaxed);
        step(5).await;
        assert_eq!(trims.load(Ordering::Relaxed), 2, "once after the next one");
        task.abort();
    }
}
