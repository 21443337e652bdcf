//! Wires the rooms together for `kaffediem serve`: open the store, start the fan-out, bind
//! the port, accept connections, and shut down in the order that loses nothing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::channels::fanout::Fanout;
use crate::channels::registry::Registry;
use crate::channels::{Access, Cafe, Credential, ADMIN_TOKEN_SOCKETS};
use crate::clock::{CafeClock, Clock};
use crate::config::Config;
use crate::http::auth::Auth;
use crate::http::{self, App};
use crate::ops::metrics::{self, Counters, Sources};
use crate::ops::{check, memory, reload, systemd};
use crate::phoenix::per_address::PerAddress;
use crate::phoenix::{Endpoint, EndpointConfig};
use crate::store::{self, RecordCtx, Store, StoreError, StoreOptions};

/// Close code for sockets when the daemon stops ("going away"; clients reconnect).
const CLOSE_GOING_AWAY: u16 = 1001;

/// What a connection past its address's limit is told before it is closed (cheap: one
/// non-blocking write, no request read).
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
Content-Type: text/plain\r\nContent-Length: 38\r\n\r\ntoo many connections from your address";

/// How long open HTTP requests get to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What `serve` needs besides the configuration.
pub struct Options {
    pub config: Config,
    pub config_path: Option<PathBuf>,
    pub clock: Arc<dyn Clock>,
    /// Fill an empty database with the demo café before serving.
    pub demo: bool,
}

/// Why the daemon could not start, worded for the person at the console.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// A started daemon.
pub struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// The address actually bound (port 0 resolves to a real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop as on SIGTERM and wait until everything is flushed.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Wait until the daemon stops (after [`Running::shutdown`] from elsewhere, or a fatal error).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// The socket endpoint settings that come from the configuration.
pub fn endpoint_config(config: &Config) -> EndpointConfig {
    let l = &config.limits;
    EndpointConfig {
        idle_timeout: Duration::from_secs(l.idle_timeout_seconds),
        max_message_bytes: l.max_message_bytes,
        max_topics_per_socket: l.max_topics_per_socket,
        outbound_queue: l.outbound_queue,
        max_sockets: l.max_sockets,
        max_sockets_per_address: l.max_sockets_per_address,
        joins_per_minute_per_socket: l.joins_per_minute_per_socket,
        joins_per_minute_per_address: l.joins_per_minute_per_address,
        check_origin: config.http.check_origin,
        allowed_origins: config.http.allowed_origins.clone(),
    }
}

/// The channels' access rules that come from the configuration.
fn access(config: &Config) -> Access {
    Access {
        public_read: config.access.public_read,
        order_snapshot_days: config.limits.order_snapshot_days,
        snapshot_max_records: config.limits.snapshot_max_records,
    }
}

/// How records render absolute URLs (item images) outside a request: on sockets. With
/// `http.public_url` unset, the best guess is this machine's host name and the bound port,
/// which is right on a café LAN with mDNS (`kaffediem.local`) and is logged so the operator
/// can set the real address.
fn record_ctx(config: &Config, bound: SocketAddr) -> RecordCtx {
    if !config.http.public_url.is_empty() {
        return RecordCtx {
            public_url: config.http.public_url.trim_end_matches('/').to_owned(),
        };
    }
    let host = if bound.ip().is_unspecified() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.contains('.') {
                    h
                } else {
                    format!("{h}.local")
                }
            })
            .unwrap_or_else(|| "localhost".into())
    } else {
        bound.ip().to_string()
    };
    let public_url = format!("http://{host}:{}", bound.port());
    tracing::warn!(
        "http.public_url is not set: image URLs pushed to screens use {public_url}; \
         set http.public_url to the address screens reach this Pi at"
    );
    RecordCtx { public_url }
}

/// Open everything and start serving; returns once the port is bound.
pub async fn start(options: Options) -> Result<Running, StartError> {
    let Options {
        config,
        config_path,
        clock,
        demo,
    } = options;
    Auth::check_config(&config).map_err(StartError)?;
    // One daemon per database: a second one stops here, naming the first, before it binds
    // (the directory is checked first so that a missing one gets its own clear error).
    check::database_writable(&config.database.path).map_err(StartError)?;
    let lock = store::lock::DaemonLock::acquire(&config.database.path).map_err(StartError)?;
    // The port next: "address in use" is the commonest start-up failure, and it should be
    // reported before the database is opened (and perhaps migrated) for nothing.
    let listener = bind(&config).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError(format!("cannot read the bound address: {e}")))?;
    let records = record_ctx(&config, addr);
    let path = config.database.path.clone();
    let store_options = StoreOptions {
        path: path.clone(),
        readers: 4,
        records: records.clone(),
    };
    let epoch = settle_epoch(&path)?;
    let (store, feed) =
        Store::open(store_options, Arc::clone(&clock)).map_err(|e| open_error(&path, e))?;
    if config.database.external_replication {
        store::replication::leave_checkpoints_to_replicator(&store.writer)
            .await
            .map_err(|e| open_error(&path, e))?;
        tracing::info!(
            "database.external_replication: checkpoints of {} are left to the replicator (Litestream)",
            path.display()
        );
    }
    if demo {
        match store::demo::load(&store.writer).await {
            Ok(true) => tracing::info!("loaded the demo café into {}", path.display()),
            Ok(false) => tracing::info!("database already has a menu; demo not loaded"),
            Err(e) => return Err(StartError(format!("cannot load the demo café: {e}"))),
        }
    }

    // From here on "now" is never earlier than what the database already holds (the Pi's
    // clock may be stale until NTP syncs, or be set back).
    let newest = store
        .readers
        .read(store::stamps::newest)
        .await
        .map_err(|e| StartError(format!("cannot read the newest stamp: {e}")))?;
    let cafe_clock = CafeClock::new(clock, newest);
    let clock: Arc<dyn Clock> = cafe_clock.clone();

    let auth = Auth::open_with_clock(&store, &config, Arc::clone(&clock))
        .await
        .map_err(|e| StartError(format!("cannot set up accounts: {e}")))?;

    let tz = config.time_zone();
    let registry = Registry::new();
    let fanout = Fanout::load(
        &store,
        Arc::clone(&registry),
        Arc::clone(&clock),
        tz.clone(),
        jiff::SignedDuration::from_hours(i64::from(config.limits.change_log_hours)),
    )
    .await
    .map_err(|e| StartError(format!("cannot read orders: {e}")))?;
    let counters = Arc::new(Counters::default());
    tokio::spawn(fanout.run(metrics::count_feed(feed, Arc::clone(&counters))));

    let cafe = Arc::new(
        Cafe::new(
            store.clone(),
            Arc::clone(&registry),
            access(&config),
            Arc::clone(&clock),
            tz,
            records,
        )
        .with_auth(auth.clone())
        .with_epoch(&epoch.id),
    );
    let endpoint = Endpoint::new(Arc::clone(&cafe), endpoint_config(&config));
    // A logout closes the sockets its session authenticated: they reconnect, anonymous or
    // refused (a socket token of the revoked session gets 403).
    auth.on_session_revoked({
        let endpoint = Arc::downgrade(&endpoint);
        move |session_id| {
            if let Some(endpoint) = endpoint.upgrade() {
                let closed = endpoint.disconnect(
                    &Credential::Session(session_id)
                        .socket_id()
                        .unwrap_or_default(),
                );
                tracing::debug!(session_id, closed, "session revoked; its sockets closed");
            }
        }
    });
    // Sessions also end where the daemon does not see it (`kaffediem user passwd`, the sqlite3
    // shell, expiry): the watch finds them and closes their sockets the same way.
    let session_watch = auth.watch_sessions({
        let endpoint = Arc::downgrade(&endpoint);
        move || endpoint.upgrade().map(|endpoint| endpoint.socket_ids())
    });
    let writes = Arc::new(metrics::WriteMetrics::default());
    {
        let writes = Arc::clone(&writes);
        store.writer.observe_with(move |took| writes.observe(took));
    }
    let sources = Arc::new(Sources {
        broadcasts: Some(Arc::clone(&registry.broadcasts)),
        resyncs: Some(Arc::clone(&registry.resyncs)),
        snapshots: Some(store.snapshots.counts()),
        registry,
        counters,
        writes: Some(writes),
        writer: Some(store.writer.counts()),
        clock: Some(cafe_clock),
    });

    tracing::info!("listening on {addr}");

    let app = Arc::new(App::new(
        store.clone(),
        Arc::clone(&endpoint),
        Arc::clone(&auth),
        Arc::clone(&clock),
        sources,
        &config,
    ));
    let config_watch = config_path.and_then(|path| {
        let targets = Reloadable {
            endpoint: Arc::clone(&endpoint),
            cafe: Arc::clone(&cafe),
            auth: Arc::clone(&auth),
            app: Arc::clone(&app),
        };
        watch_config(path, &config, targets)
    });
    // READY before the first watchdog ping: systemd ignores pings from a unit still starting.
    systemd::ready();
    let watchdog = systemd::spawn_watchdog(store.readers.clone(), store.writer.clone());
    let trimmer = memory::spawn_trimmer({
        let endpoint = Arc::clone(&endpoint);
        move || {
            let m = endpoint.metrics();
            let sent = m.messages_sent.load(std::sync::atomic::Ordering::Relaxed);
            sent.wrapping_add(m.open_sockets.load(std::sync::atomic::Ordering::Relaxed))
        }
    });
    let high_water = spawn_high_water(store.readers.clone(), path.clone(), epoch.id.clone());
    let header_timeout = Duration::from_secs(config.limits.header_timeout_seconds);
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let connections = accept_loop(listener, app, header_timeout, stop_rx).await;
        // Stop order: nothing new comes in (the listener is closed); sockets are told 1001
        // while HTTP requests in flight finish; then the writer finishes the writes queued by
        // those requests and checkpoints the WAL, so the database file alone is complete.
        systemd::stopping();
        drop(config_watch);
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        if let Some(trimmer) = trimmer {
            trimmer.abort();
        }
        session_watch.abort();
        let closing = async {
            match tokio::time::timeout(DRAIN_TIMEOUT, endpoint.close_all(CLOSE_GOING_AWAY)).await {
                Ok(()) => tracing::debug!("every socket closed"),
                Err(_) => tracing::warn!("some sockets were still closing after {DRAIN_TIMEOUT:?}"),
            }
        };
        tokio::join!(closing, connections.drain());
        high_water.abort();
        if let Err(e) = store.shutdown().await {
            tracing::error!(error = %e, "database shutdown failed");
        }
        final_high_water(&path, &epoch.id);
        // Released only once the database is closed and checkpointed.
        drop(lock);
        tracing::info!("stopped");
    });
    Ok(Running {
        addr,
        stop: Some(stop_tx),
        task,
    })
}

async fn bind(config: &Config) -> Result<TcpListener, StartError> {
    let bind = SocketAddr::new(config.http.bind, config.http.port);
    TcpListener::bind(bind).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "; another program (or another kaffediem) uses that port: stop it, or set http.port / KAFFEDIEM_PORT"
            }
            std::io::ErrorKind::PermissionDenied => {
                "; ports below 1024 need privileges: use a higher port"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "; that address is not on this machine: set http.bind / KAFFEDIEM_BIND"
            }
            _ => "",
        };
        StartError(format!("cannot listen on {bind}: {e}{hint}"))
    })
}

/// Open and migrate the database, and decide this start's epoch (a restored copy begins a new
/// one; see `store::epoch`). Before the store opens, so nothing is read under the old epoch.
fn settle_epoch(path: &std::path::Path) -> Result<store::epoch::Epoch, StartError> {
    match store::epoch::set_aside_foreign_wal(path) {
        Ok(None) => {}
        Ok(Some(aside)) => tracing::warn!(
            "{} was restored from a backup over a database that had not stopped cleanly: \
             the old write-ahead log belongs to the replaced history and was moved to {} \
             (not applied)",
            path.display(),
            aside.display()
        ),
        Err(e) => {
            return Err(StartError(format!(
                "cannot move the stale write-ahead log beside {} aside: {e}",
                path.display()
            )))
        }
    }
    let mut conn = store::schema::open_connection(path).map_err(|e| open_error(path, e))?;
    store::schema::migrate(&mut conn, path).map_err(|e| open_error(path, e))?;
    let epoch = store::epoch::settle(&mut conn, path).map_err(|e| open_error(path, e))?;
    match epoch.began {
        Some(why) => tracing::warn!(
            epoch = %epoch.id,
            "a new database epoch begins: {why}; screens resuming from before it get a full snapshot"
        ),
        None => tracing::info!(epoch = %epoch.id, "database epoch"),
    }
    Ok(epoch)
}

/// Keep the high-water mark beside the database up to date while serving (only when `seq`
/// moved), so a restore by plain `cp` is noticed at the next start.
fn spawn_high_water(readers: store::Readers, path: PathBuf, epoch: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut marked = None;
        let mut tick = tokio::time::interval(store::epoch::MARK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (path, epoch) = (path.clone(), epoch.clone());
            let written = readers
                .read(move |conn| {
                    let seq = store::current_seq(conn)?;
                    if marked == Some(seq) {
                        return Ok::<_, StoreError>(seq);
                    }
                    store::epoch::write_mark(conn, &path, &epoch).map(|()| seq)
                })
                .await;
            match written {
                Ok(seq) => marked = Some(seq),
                Err(e) => tracing::warn!(error = %e, "cannot update the high-water mark"),
            }
        }
    })
}

/// The last high-water mark, after the writer has stopped: everything committed is in it.
fn final_high_water(path: &std::path::Path, epoch: &str) {
    if let Err(e) = store::epoch::write_final_mark(path, epoch) {
        tracing::warn!(error = %e, "cannot write the high-water mark");
    }
}

/// "Cannot open the database", with the fix for each way it fails.
fn open_error(path: &std::path::Path, e: StoreError) -> StartError {
    let fix = match &e {
        // The message already says: upgrade kaffediem.
        StoreError::TooNew { .. } => "",
        StoreError::Unavailable(_) => {
            ": make it writable by the user running kaffediem, or set database.path / KAFFEDIEM_DB"
        }
        _ => ": run `kaffediem check` on it, or restore the last good backup",
    };
    StartError(format!("cannot open database {}: {e}{fix}", path.display()))
}

/// Everything a reloaded configuration reaches.
struct Reloadable {
    /// Origins and socket limits.
    endpoint: Arc<Endpoint<Cafe>>,
    /// Who may join what.
    cafe: Arc<Cafe>,
    /// Cookie attributes, session and token lifetimes, login rate limits.
    auth: Arc<Auth>,
    /// CORS origins, body limits and access rules of the HTTP API.
    app: Arc<App>,
}

/// Follow edits of the configuration file: every key that applies at once goes to the room
/// that reads it, the log level to the log subscriber. Without a watch (no inotify, say) the
/// daemon still serves; edits then need a restart.
fn watch_config(
    path: PathBuf,
    config: &Config,
    targets: Reloadable,
) -> Option<reload::ConfigWatch> {
    let mut level = config.log.level.clone();
    let apply = move |new: &Config| {
        targets.endpoint.set_config(endpoint_config(new));
        targets.cafe.set_access(access(new));
        targets.auth.set_config(new);
        targets.app.set_config(new);
        if targets.auth.admin_token().replace(&new.access.admin_token) {
            // Sockets let in by the old token must not keep its rights: they reconnect and
            // are judged by the new one.
            let closed = targets.endpoint.disconnect(ADMIN_TOKEN_SOCKETS);
            tracing::info!(
                closed,
                "access.admin_token changed; sockets that used the old one were closed"
            );
        }
        if new.log.level != level {
            level = new.log.level.clone();
            crate::ops::logging::set_level(&level);
        }
    };
    match reload::watch(path.clone(), config.clone(), apply) {
        Ok(watch) => Some(watch),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch {}; configuration edits need a restart", path.display());
            None
        }
    }
}

/// The open HTTP connections once the listener is closed.
struct Connections {
    draining: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
}

impl Connections {
    /// Let every request in flight finish and close its connection; wait at most
    /// [`DRAIN_TIMEOUT`].
    async fn drain(mut self) {
        let _ = self.draining.send(true);
        match tokio::time::timeout(DRAIN_TIMEOUT, self.done.recv()).await {
            Ok(_) => tracing::debug!("every HTTP connection finished"),
            Err(_) => tracing::warn!("some HTTP requests were still open after {DRAIN_TIMEOUT:?}"),
        }
    }
}

/// Accept connections until `stop`; then close the listener and hand back the connections.
async fn accept_loop(
    listener: TcpListener,
    app: Arc<App>,
    header_timeout: Duration,
    mut stop: oneshot::Receiver<()>,
) -> Connections {
    // Shutdown is a watch flipped to true; "all connections finished" is every clone of
    // `done_tx` dropped, so `done_rx.recv()` yields `None` (the mini-redis pattern).
    let (draining_tx, draining_rx) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel::<()>(1);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // Open connections per client address (`limits.max_connections_per_address`): one laptop
    // must not take every file descriptor. A connection upgraded to a WebSocket leaves this
    // count and is counted by the endpoint as a socket instead.
    let per_address = PerAddress::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let counted = match app.connection_limit(peer.ip()) {
            None => None,
            Some(limit) => match per_address.try_acquire(peer.ip(), limit) {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(%peer, limit, "connection refused: too many from this address");
                    let _ = stream.try_write(TOO_MANY_CONNECTIONS);
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let service = service_fn(move |req| http::handle(Arc::clone(&app), req, peer));
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut draining = draining_rx.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let _done = done;
            let _counted = counted;
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = async { draining.wait_for(|d| *d).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    Connections {
        draining: draining_tx,
        done: done_rx,
    }
}
