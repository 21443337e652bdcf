//! Socket authentication waits for the database off the async threads: while an upgrade's
//! (or a join's) session row cannot be read yet, the daemon goes on answering everyone else,
//! and the upgrade or join is answered — with the logged-in user's rights — once the row can
//! be read.
//!
//! The database is made to wait the way another process can make it wait: a process holding
//! SQLite's WAL read-mark locks (bytes 123..128 of the `-shm` file, which every read
//! transaction needs one of) keeps every reader spinning until it lets go. It must be another
//! process: POSIX record locks do not conflict within one. The tests run on a current-thread
//! runtime shared with the daemon, so one read on a runtime thread would stall them all.

use std::ffi::CString;
use std::path::Path;

use hyper::header::HeaderValue;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::accounts::{login, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::support::http::call;
use crate::support::{Daemon, Socket, WAIT};

/// A child process holding every WAL read-mark lock of a database; readers wait until it is
/// dropped.
struct ReadsHeld {
    /// The process holding the locks, reaped when dropped.
    child: libc::pid_t,
    /// Closing it tells the child to let go and exit.
    release: libc::c_int,
}

impl ReadsHeld {
    async fn on(db: &Path) -> ReadsHeld {
        let shm = CString::new(format!("{}-shm", db.display())).expect("path");
        let (mut ready, mut release) = ([0; 2], [0; 2]);
        // SAFETY: plain pipe(2) calls into arrays of two descriptors.
        unsafe {
            assert_eq!(libc::pipe(ready.as_mut_ptr()), 0);
            assert_eq!(libc::pipe(release.as_mut_ptr()), 0);
        }
        // SAFETY: the child runs only async-signal-safe calls (open, fcntl, read, write, _exit)
        // on memory prepared before the fork, as a child of a threaded process must.
        let child = unsafe { libc::fork() };
        if child == 0 {
            unsafe {
                libc::close(ready[0]);
                libc::close(release[1]);
                let fd = libc::open(shm.as_ptr(), libc::O_RDWR);
                let mut lock: libc::flock = std::mem::zeroed();
                lock.l_type = libc::F_WRLCK as libc::c_short;
                lock.l_whence = libc::SEEK_SET as libc::c_short;
                lock.l_start = 123;
                lock.l_len = 5;
                let held = fd >= 0 && libc::fcntl(fd, libc::F_SETLKW, &lock) == 0;
                let byte = u8::from(held);
                libc::write(ready[1], (&byte as *const u8).cast(), 1);
                let mut buf = 0u8;
                libc::read(release[0], (&mut buf as *mut u8).cast(), 1);
                libc::_exit(0);
            }
        }
        assert!(child > 0, "fork failed");
        // SAFETY: closing our copies of the child's ends.
        unsafe {
            libc::close(ready[1]);
            libc::close(release[0]);
        }
        let read_end = ready[0];
        let held = tokio::task::spawn_blocking(move || {
            let mut byte = 0u8;
            // SAFETY: a one-byte read into a local from a descriptor we own.
            let n = unsafe { libc::read(read_end, (&mut byte as *mut u8).cast(), 1) };
            unsafe { libc::close(read_end) };
            n == 1 && byte == 1
        })
        .await
        .expect("wait for the child");
        let reads_held = ReadsHeld {
            child,
            release: release[1],
        };
        assert!(held, "the child could not lock the read marks");
        reads_held
    }
}

impl Drop for ReadsHeld {
    fn drop(&mut self) {
        // SAFETY: closing our descriptor, then reaping our own child.
        unsafe {
            libc::close(self.release);
            libc::waitpid(self.child, std::ptr::null_mut(), 0);
        }
    }
}

/// `kaffediem_open_sockets` from `/metrics` (loopback may read it; it reads no database).
async fn open_sockets(d: &Daemon) -> u64 {
    let reply = call(d.addr, "GET", "/metrics").send().await;
    assert_eq!(reply.status, 200);
    reply
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("kaffediem_open_sockets "))
        .and_then(|n| n.trim().parse().ok())
        .expect("kaffediem_open_sockets in /metrics")
}

/// A socket upgraded with the session cookie `cookie`.
async fn with_cookie(url: String, cookie: String) -> Socket {
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "cookie",
        HeaderValue::from_str(&cookie).expect("cookie header"),
    );
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the upgrade is answered");
    Socket::from_ws(ws)
}

async fn admin_daemon() -> (Daemon, String) {
    let d = Daemon::start(false, |c| {
        c.bootstrap.admin_email = ADMIN_EMAIL.into();
        c.bootstrap.admin_password = ADMIN_PASSWORD.into();
    })
    .await;
    let cookie = login(&d, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    (d, cookie)
}

#[tokio::test]
async fn an_upgrade_waiting_for_its_session_row_holds_up_nobody_and_is_then_answered() {
    let (d, cookie) = admin_daemon().await;
    let held = ReadsHeld::on(&d.db).await;

    let upgrade = tokio::spawn(with_cookie(d.url("vsn=2.0.0"), cookie));
    // The daemon has taken the socket's slot (it is in `connect`, waiting for the session
    // row), and it still answers another client meanwhile.
    let deadline = tokio::time::Instant::now() + WAIT;
    while open_sockets(&d).await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the daemon did not take the upgrade, or stopped answering others while it waited"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        !upgrade.is_finished(),
        "the upgrade cannot be answered before its session row is read"
    );

    drop(held);
    let mut socket = tokio::time::timeout(WAIT, upgrade)
        .await
        .expect("the upgrade is answered once the database can be read")
        .expect("upgrade task");
    // Authenticated by its cookie, not let in as anonymous for want of a read.
    socket.join_ok("notifications:admin", json!({})).await;
    d.stop().await;
}

#[tokio::test]
async fn a_join_rereading_its_session_holds_up_nobody_and_keeps_its_rights() {
    let (d, cookie) = admin_daemon().await;
    let mut socket = with_cookie(d.url("vsn=2.0.0"), cookie).await;
    let held = ReadsHeld::on(&d.db).await;

    // A join on a session socket reads the session again first; that read has to wait.
    let join = tokio::spawn(async move {
        let reply = socket.join("notifications:admin", json!({})).await;
        (socket, reply)
    });
    // Let the daemon take the join frame (this runtime is the daemon's too).
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        open_sockets(&d).await,
        1,
        "the daemon answers others meanwhile"
    );
    assert!(
        !join.is_finished(),
        "the join cannot be answered before its session is read again"
    );

    drop(held);
    let (_socket, reply) = tokio::time::timeout(WAIT, join)
        .await
        .expect("the join is answered once the database can be read")
        .expect("join task");
    assert_eq!(reply["status"], "ok", "{reply}");
    d.stop().await;
}
