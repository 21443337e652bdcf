//! One daemon per database file: a second one refuses to start and names the first; the
//! lock dies with its process (a crash leaves nothing stale); the CLI still writes beside it.

use std::io::Write;
use std::process::Stdio;

use crate::support::process::{error_line, text, Daemon, Site};

#[test]
fn a_second_daemon_on_the_same_database_refuses_naming_the_first_and_a_crash_leaves_no_stale_lock()
{
    let site = Site::new();
    site.demo_db();
    let mut first = Daemon::start(site.command(&["serve"]));

    // Another port, the same file: refused at once, one line naming the running one.
    let second = site.run(&["serve"]);
    assert!(!second.status.success(), "two daemons serve one database");
    let line = error_line(&second);
    assert!(
        line.contains(&format!("pid {}", first.pid())),
        "the error should name the running instance: {line}"
    );
    assert!(line.contains("kaffediem.db"), "{line}");
    assert!(
        !text(&second.stderr).contains("listening on"),
        "{}",
        text(&second.stderr)
    );

    // The CLI writes beside the daemon: a new user while it serves.
    let mut add = site.command(&[
        "user",
        "add",
        "--email",
        "kari@example.com",
        "--name",
        "Kari",
    ]);
    let mut child = add
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn user add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"kari's long password\n")
        .expect("password");
    let added = child.wait_with_output().expect("user add");
    assert!(added.status.success(), "{}", text(&added.stderr));

    // A crash (SIGKILL) releases the lock: the next start just works.
    first.kill();
    let mut next = Daemon::start(site.command(&["serve"]));
    let again = site.run(&["serve"]);
    assert!(!again.status.success());
    assert!(
        error_line(&again).contains(&format!("pid {}", next.pid())),
        "{}",
        error_line(&again)
    );
    next.terminate();
    assert!(next.wait().success());
    // A clean stop too.
    let mut last = Daemon::start(site.command(&["serve"]));
    last.terminate();
    assert!(last.wait().success());
}
