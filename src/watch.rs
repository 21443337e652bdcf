//! Watching a file for changes made by anyone (an editor, the `sqlite3` shell, a restore):
//! the one `notify` watcher the daemon's rooms share, for the configuration file
//! (`ops::reload`) and the database with its WAL (`store::writer`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use notify::{EventKind, RecursiveMode, Watcher};

/// A running watch; dropping it stops watching.
pub type FileWatch = notify::RecommendedWatcher;

/// Call `changed` whenever the file at `path`, or a file beside it named like it plus one of
/// `suffixes` (`"-wal"`), is created, written, renamed or removed. Reads are not changes (a
/// watcher that reacts by reading the file would otherwise wake itself forever); an error
/// from the watch (its queue overflowed) counts as a change, since it may hide one.
///
/// The directory is watched, not the file: an editor that saves by renaming a new file over
/// the old one would leave a watch on the old inode looking at nothing.
pub fn watch_file(
    path: &Path,
    suffixes: &[&str],
    mut changed: impl FnMut() + Send + 'static,
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
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let ours = match event {
            Ok(event) => {
                !matches!(event.kind, EventKind::Access(_))
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
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
