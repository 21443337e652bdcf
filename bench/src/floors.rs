//! The floors each Kaffediem figure is divided by, measured in the same run on the same
//! machine: raw SQLite durable inserts, a bare tokio-tungstenite broadcast server (run as a
//! child process, `floor-server`), and the cost of building and encoding the menu.

use std::io::BufRead;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use kaffediem::clock::SystemClock;
use kaffediem::store::{self, RecordCtx, Store, StoreError, StoreOptions};

/// Inserts per second with one durable transaction per insert (WAL, `synchronous = FULL`),
/// one connection, rows shaped like orders.
pub fn raw_sqlite(dir: &Path, rows: usize) -> Result<f64, String> {
    let path = dir.join("raw-floor.db");
    let _ = std::fs::remove_file(&path);
    let conn = rusqlite::Connection::open(&path).map_err(|e| e.to_string())?;
    let setup = || -> rusqlite::Result<()> {
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE, \
             items TEXT NOT NULL, total_nok INTEGER NOT NULL, \
             inserted_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))",
        )
    };
    setup().map_err(|e| e.to_string())?;
    let items = r#"[{"item_id":1,"name":"Cappuccino","price":45,"category":"Kaffe","customizations":[],"total":45}]"#;
    let start = Instant::now();
    for i in 0..rows {
        // Autocommit: every statement is its own transaction, fsynced at COMMIT.
        conn.execute(
            "INSERT INTO t (uuid, items, total_nok) VALUES (?1, ?2, 45)",
            rusqlite::params![format!("raw-{i}"), items],
        )
        .map_err(|e| e.to_string())?;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(rows as f64 / secs)
}

/// Orders per second through the daemon's writer, in process (no HTTP, no sockets):
/// `writers` tasks each awaiting `Writer::write` of one order insert at a time.
pub async fn writer_in_process(dir: &Path, rows: usize, writers: usize) -> Result<f64, String> {
    let path = dir.join("writer-floor.db");
    let options = StoreOptions {
        path: path.clone(),
        readers: 1,
        records: RecordCtx::default(),
    };
    let (store, feed) = Store::open(options, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    // Keep the change feed drained, as the fan-out would.
    let drain = tokio::spawn(async move {
        let mut feed = feed;
        while feed.recv().await.is_some() {}
    });
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers.max(1) {
        let (writer, next) = (store.writer.clone(), Arc::clone(&next));
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= rows {
                    return Ok::<(), StoreError>(());
                }
                writer
                    .write(move |tx| {
                        tx.execute(
                            r#"INSERT INTO "order" (uuid, items, total_nok) VALUES (?1, '[]', 0)"#,
                            [format!("writer-{i}")],
                        )?;
                        Ok::<_, StoreError>(())
                    })
                    .await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    let rate = rows as f64 / start.elapsed().as_secs_f64();
    store.shutdown().await.map_err(|e| e.to_string())?;
    drop(store);
    let _ = drain.await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(rate)
}

/// Menu timing: the median over `rounds` of building the menu from the database, and of
/// encoding its broadcast frame.
pub struct MenuTiming {
    pub build: Duration,
    pub encode: Duration,
    pub bytes: usize,
}

/// Create the SPEC 11 menu (200 items in 20 categories, 20 keys with 4 values each, each
/// category offering `keys_per_category` keys) in a new database at `path`, item ids 1..=200.
pub async fn seed_big_menu(path: &Path, keys_per_category: i64) -> Result<(), String> {
    let options = StoreOptions {
        path: path.to_path_buf(),
        readers: 1,
        records: RecordCtx::default(),
    };
    let (store, _feed) = Store::open(options, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    store
        .writer
        .write(move |tx| {
            for k in 1..=20 {
                tx.execute(
                    "INSERT INTO customization_key (id, name, label_color, sort_order) \
                     VALUES (?1, ?2, '#aabbcc', ?1)",
                    rusqlite::params![k, format!("Valg {k}")],
                )?;
            }
            for v in 1..=80 {
                tx.execute(
                    "INSERT INTO customization_value \
                     (id, name, price_increment_nok, belongs_to, sort_order) VALUES (?1, ?2, 5, ?3, ?1)",
                    rusqlite::params![v, format!("Verdi {v}"), (v - 1) / 4 + 1],
                )?;
            }
            for c in 1..=20i64 {
                let valid: Vec<i64> = (0..keys_per_category).map(|k| (c + k * 5) % 20 + 1).collect();
                tx.execute(
                    "INSERT INTO category (id, name, sort_order, valid_customizations) \
                     VALUES (?1, ?2, ?1, ?3)",
                    rusqlite::params![c, format!("Kategori {c}"), serde_json::to_string(&valid).unwrap_or_default()],
                )?;
            }
            for i in 1..=200i64 {
                tx.execute(
                    "INSERT INTO item (id, name, price_nok, category_id, sort_order) \
                     VALUES (?1, ?2, ?3, ?4, ?1)",
                    rusqlite::params![i, format!("Vare {i}"), 40 + i % 20, (i - 1) / 10 + 1],
                )?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(|e| e.to_string())?;
    store.shutdown().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Fill a fresh database with 20 categories × 10 items, 20 keys × 4 values (each category
/// offering `keys_per_category` keys), then time what the writer and the fan-out do after a
/// menu commit: build the menu from the tables, and build + encode its broadcast frame.
pub async fn menu(dir: &Path, keys_per_category: i64, rounds: usize) -> Result<MenuTiming, String> {
    let path = dir.join(format!("menu-floor-{keys_per_category}.db"));
    seed_big_menu(&path, keys_per_category).await?;
    let conn = store::schema::open_connection(&path).map_err(|e| e.to_string())?;
    let ctx = RecordCtx::default();
    let registry = kaffediem::channels::registry::Registry::new();
    let (mut builds, mut encodes, mut bytes) = (Vec::new(), Vec::new(), 0);
    for seq in 0..rounds as u64 {
        let start = Instant::now();
        let built = store::menu::build_published(&conn, &ctx).map_err(|e| e.to_string())?;
        builds.push(start.elapsed());
        let start = Instant::now();
        let frame = kaffediem::channels::fanout::menu_broadcast(&registry, &built, seq)
            .encoded(kaffediem::phoenix::Vsn::V2);
        encodes.push(start.elapsed());
        bytes = frame.len();
    }
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    builds.sort();
    encodes.sort();
    Ok(MenuTiming {
        build: builds[builds.len() / 2],
        encode: encodes[encodes.len() / 2],
        bytes,
    })
}

/// The bare broadcast floor: a WebSocket server with nothing but tokio-tungstenite, the
/// daemon's socket settings (1 KiB read buffer, 8 KiB write batches) and a bounded queue per
/// socket. Reads `send <i>` lines on stdin and queues one pre-encoded frame of about
/// `frame_bytes` to every socket. Runs until stdin closes.
pub fn floor_server(frame_bytes: usize) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let queues: Arc<Mutex<Vec<mpsc::Sender<Message>>>> = Arc::default();
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    eprintln!(
        "floor server listening on {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let accepting = Arc::clone(&queues);
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (tx, mut rx) = mpsc::channel::<Message>(1024);
            accepting.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
            tokio::spawn(async move {
                let config = WebSocketConfig::default()
                    .read_buffer_size(1024)
                    .write_buffer_size(8 * 1024);
                let Ok(mut ws) =
                    tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
                else {
                    return;
                };
                loop {
                    tokio::select! {
                        msg = rx.recv() => match msg {
                            Some(msg) => {
                                // Everything already queued goes out in one flush.
                                let mut batch = vec![msg];
                                while let Ok(more) = rx.try_recv() {
                                    batch.push(more);
                                }
                                for msg in batch {
                                    if ws.feed(msg).await.is_err() {
                                        return;
                                    }
                                }
                                if ws.flush().await.is_err() {
                                    return;
                                }
                            }
                            None => return,
                        },
                        inbound = ws.next() => match inbound {
                            Some(Ok(_)) => {}
                            _ => return,
                        },
                    }
                }
            });
        }
    });
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let Some(i) = line
            .strip_prefix("send ")
            .and_then(|i| i.parse::<u64>().ok())
        else {
            continue;
        };
        let head = format!(
            r#"[null,null,"collection:order","change",{{"action":"create","record":{{"id":{i},"uuid":"floor-{i}","pad":""#
        );
        let tail = format!(r#""}},"seq":{i}}}]"#);
        let pad = frame_bytes.saturating_sub(head.len() + tail.len());
        let frame = Message::text(format!("{head}{}{tail}", "x".repeat(pad)));
        let queues = queues.lock().unwrap_or_else(|e| e.into_inner());
        for q in queues.iter() {
            let _ = q.try_send(frame.clone());
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
