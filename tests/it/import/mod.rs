//! `kaffediem import kaffebase` (issue 11): a café on the old backend brings its file.
//! Fixtures are Kaffebase files built from the old DDL (`fixture`); the importer runs as the
//! real binary; what it wrote is checked through the daemon's HTTP and WebSocket interface.

mod cli;
mod fixture;
mod live;
mod serve;

use std::path::Path;
use std::process::Output;

use super::support::process::{text, Site};

/// `kaffediem import kaffebase OLD ARGS...` on `site`'s database.
pub fn import(site: &Site, old: &Path, args: &[&str]) -> Output {
    let old = old.to_str().expect("utf-8 path");
    let mut all = vec!["import", "kaffebase", old];
    all.extend_from_slice(args);
    site.run(&all)
}

/// The report of a run that must have succeeded.
pub fn report(out: &Output) -> String {
    assert!(
        out.status.success(),
        "import failed: {}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

/// The report's counts for `table`: read, imported, altered, skipped.
pub fn counts(report: &str, table: &str) -> [usize; 4] {
    let line = report
        .lines()
        .find(|l| l.split_whitespace().next() == Some(table))
        .unwrap_or_else(|| panic!("no counts for {table} in:\n{report}"));
    let n: Vec<usize> = line
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().expect("a count"))
        .collect();
    [n[0], n[1], n[2], n[3]]
}
