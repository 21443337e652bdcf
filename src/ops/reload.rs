//! Configuration hot reload (SPEC 8): the file in use is watched; after an edit settles it is
//! parsed again, the keys that apply at once are handed to the daemon, the keys that need a
//! restart are logged as such, and an edit that does not parse is logged and ignored.
//!
//! This module knows what changed, not where it goes: the caller's `apply` routes a new
//! configuration to the rooms' setters.

use std::path::{Path, PathBuf};
use std::time::Duration;

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
    _watcher: crate::watch::FileWatch,
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
    let watcher = crate::watch::watch_file(&path, &[], move || {
        let _ = tx.send(());
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn an_edit_is_applied_and_a_broken_edit_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kaffediem.toml");
        std::fs::write(&path, "[http]\nallowed_origins = []\n").expect("write");
        let (running, _) = Config::load(Some(&path)).expect("load");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watch = watch(path.clone(), running, move |c: &Config| {
            let _ = tx.send(c.clone());
        })
        .expect("watch");

        std::fs::write(
            &path,
            "[http]\nallowed_origins = [\"https://screens.example\"]\n",
        )
        .expect("write");
        let applied = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("applied in time")
            .expect("config");
        assert_eq!(applied.http.allowed_origins, ["https://screens.example"]);

        // Broken, then restart-only: neither reaches `apply`; nor does our own reading.
        std::fs::write(&path, "[http]\nprot = 1\n").expect("write");
        tokio::time::sleep(SETTLE * 3).await;
        std::fs::write(
            &path,
            "[http]\nallowed_origins = [\"https://screens.example\"]\n[cafe]\ntime_zone = \"UTC\"\n",
        )
        .expect("write");
        tokio::time::sleep(SETTLE * 3).await;
        assert!(rx.try_recv().is_err(), "nothing applied");

        std::fs::write(&path, "[log]\nlevel = \"debug\"\n").expect("write");
        let applied = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("applied in time")
            .expect("config");
        assert!(applied.http.allowed_origins.is_empty());
        assert_eq!(applied.log.level, "debug");
        assert_eq!(
            applied.cafe.time_zone, "Europe/Oslo",
            "restart-only key kept"
        );
    }
}
