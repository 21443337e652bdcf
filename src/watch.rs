//! Watching a file for changes made by anyone (an editor, the `sqlite3` shell, a restore):
//! one watch per file, for the configuration file (`ops::reload`) and the database with its
//! WAL (`store::writer`). On Linux an `inotify` instance read on a thread of its own; elsewhere
//! a `notify` watcher.
//!
//! What a watch costs follows the time that passes, not the writes made (issue 14): the
//! daemon's own commits write the WAL a few times per page, and each write raises an event.
//! After reading events, the Linux watch leaves its queue unread for [`COALESCE`], so the
//! kernel folds the identical events of that burst into one and the thread wakes again for
//! all of them together: at most one read and one report per [`COALESCE`], however many
//! writes, to the watched file or to any other in its directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the Linux watch leaves the kernel's queue unread after reading it. A change made
/// within it is reported at its end, so at most this much late.
pub const COALESCE: Duration = Duration::from_millis(10);

/// A running watch; dropping it stops watching.
pub struct FileWatch {
    #[cfg(target_os = "linux")]
    _watch: linux::Watch,
    #[cfg(not(target_os = "linux"))]
    _watch: notify::RecommendedWatcher,
}

/// Call `changed` whenever the file at `path`, or a file beside it named like it plus one of
/// `suffixes` (`"-wal"`), is created, written, renamed or removed. Reads are not changes (a
/// watcher that reacts by reading the file would otherwise wake itself forever); a lost
/// event (the kernel's queue overflowed) or an error from the watch counts as a change, since
/// it may hide one. Changes close together may be reported once ([`COALESCE`]).
///
/// The directory is watched, not the file: an editor that saves by renaming a new file over
/// the old one would leave a watch on the old inode looking at nothing.
pub fn watch_file(
    path: &Path,
    suffixes: &[&str],
    changed: impl FnMut() + Send + 'static,
) -> notify::Result<FileWatch> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| notify::Error::generic("the path names no file"))?;
    let names: Vec<OsString> = std::iter::once(name.to_owned())
        .chain(suffixes.iter().map(|s| {
            let mut n = name.to_owned();
            n.push(s);
            n
        }))
        .collect();
    #[cfg(target_os = "linux")]
    let watch = linux::Watch::start(&dir, names, changed).map_err(notify::Error::io)?;
    #[cfg(not(target_os = "linux"))]
    let watch = portable(&dir, names, changed)?;
    Ok(FileWatch { _watch: watch })
}

#[cfg(not(target_os = "linux"))]
fn portable(
    dir: &Path,
    names: Vec<OsString>,
    mut changed: impl FnMut() + Send + 'static,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let ours = match event {
            Ok(event) => {
                event.need_rescan()
                    || !matches!(event.kind, EventKind::Access(_))
                        && event
                            .paths
                            .iter()
                            .any(|p| p.file_name().is_some_and(|n| names.iter().any(|m| m == n)))
            }
            Err(_) => true,
        };
        if ours {
            changed();
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::OsString;
    use std::io;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

    use super::COALESCE;

    /// The watch on one directory and the thread that reads it.
    pub(super) struct Watch {
        watches: Watches,
        wd: WatchDescriptor,
        stop: Arc<AtomicBool>,
    }

    impl Watch {
        pub(super) fn start(
            dir: &Path,
            names: Vec<OsString>,
            mut changed: impl FnMut() + Send + 'static,
        ) -> io::Result<Watch> {
            let mut inotify = Inotify::init()?;
            // What changes a file's content or name; not opens, reads or closes.
            let mask = WatchMask::MODIFY
                | WatchMask::ATTRIB
                | WatchMask::CREATE
                | WatchMask::DELETE
                | WatchMask::MOVED_FROM
                | WatchMask::MOVED_TO;
            let mut watches = inotify.watches();
            let wd = watches.add(dir, mask)?;
            let stop = Arc::new(AtomicBool::new(false));
            let stopped = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("kaffediem-watch".into())
                .spawn(move || {
                    let mut buffer = [0u8; 4096];
                    loop {
                        let events = match inotify.read_events_blocking(&mut buffer) {
                            Ok(events) => events,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => {
                                tracing::warn!(error = %e, "the file watch failed; reporting a change and stopping");
                                changed();
                                return;
                            }
                        };
                        let (mut ours, mut gone, mut read) = (false, false, false);
                        for event in events {
                            read = true;
                            // The watch was removed: by `drop`, or the directory went away.
                            gone |= event.mask.contains(EventMask::IGNORED);
                            ours |= event.mask.contains(EventMask::Q_OVERFLOW)
                                || event.name.is_some_and(|n| names.iter().any(|m| m == n));
                        }
                        if stopped.load(Ordering::SeqCst) {
                            return;
                        }
                        if ours {
                            changed();
                        }
                        if gone {
                            return;
                        }
                        if read {
                            // Identical events queued meanwhile (the rest of this burst of
                            // WAL writes) are merged by the kernel into one, read next. Other
                            // files' events too: the config's watch shares the database's
                            // directory when the two files do.
                            std::thread::sleep(COALESCE);
                        }
                    }
                })?;
            Ok(Watch { watches, wd, stop })
        }
    }

    impl Drop for Watch {
        /// Removing the watch queues `IN_IGNORED`, which wakes the thread to stop (after at
        /// most one `COALESCE`); it then closes the instance.
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = self.watches.remove(self.wd.clone());
        }
    }
}
