//! Configuration hot reload (SPEC 8): the file in use is watched; after an edit settles it is
//! parsed again, the keys that apply at once are handed to the daemon, the keys that need a
//! restart are logged as such, and an edit that does not parse is logged and ignored.
//!
//! This module knows what changed, not where it goes: the caller's `apply` routes a new
//! configuration to the rooms' setters.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Config;

/// Quiet time after the last file event before the file is read. Editors save in several
/// steps (write a temporary file, rename it over, touch), and reading in between sees half a
/// file or none.
const SETTLE: Duration = Duration::from_millis(300);

/// A running watch; dropping it stops watching.
pub struct ConfigWatch {
    /// Kept alive for its inotify registration.
    _watcher: notify::RecommendedWatcher,
    task: JoinHandle<()>,
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watch `path` (the file `running` was loaded from). On every settled change the file is
/// loaded again as at start (environment overrides included); when a key that applies at once
/// changed, `apply` receives the configuration to run with from now on.
pub fn watch<F>(path: PathBuf, running: Config, apply: F) -> Result<ConfigWatch, notify::Error>
where
    F: FnMut(&Config) + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let name = path.file_name().map(|n| n.to_owned());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // A change naming our file; an error (the watch overflowed) may hide one, so it
        // counts. Opening and reading are not changes: our own reload reads the file, and
        // counting that would reload forever.
        let ours = match event {
            Ok(event) => {
                !matches!(event.kind, notify::EventKind::Access(_))
                    && event.paths.iter().any(|p| p.file_name() == name.as_deref())
            }
            Err(_) => true,
        };
        if ours {
            let _ = tx.send(());
        }
    })?;
    // The directory, not the file: an editor that saves by renaming a new file over the old
    // one would leave a watch on the old file's inode looking at nothing.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tracing::info!("watching {} for configuration changes", path.display());
    let task = tokio::spawn(follow(path, running, rx, apply));
    Ok(ConfigWatch {
        _watcher: watcher,
        task,
    })
}

async fn follow<F>(
    path: PathBuf,
    mut running: Config,
    mut events: mpsc::UnboundedReceiver<()>,
    mut apply: F,
) where
    F: FnMut(&Config),
{
    while events.recv().await.is_some() {
        loop {
            match tokio::time::timeout(SETTLE, events.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        reload(&path, &mut running, &mut apply);
    }
}

fn reload<F: FnMut(&Config)>(path: &Path, running: &mut Config, apply: &mut F) {
    let new = match Config::load(Some(path)) {
        Ok((new, _)) => new,
        Err(e) => {
            tracing::warn!("configuration not reloaded, the running one stays: {e}");
            return;
        }
    };
    let reload = running.reload(new);
    for key in &reload.needs_restart {
        tracing::warn!(
            "{key} changed in {}: needs a restart, the old value stays until then",
            path.display()
        );
    }
    if !reload.applied.is_empty() {
        apply(&reload.config);
        tracing::info!(
            "configuration reloaded from {}: {} applied",
            path.display(),
            reload.applied.join(", ")
        );
    }
    *running = reload.config;
}
