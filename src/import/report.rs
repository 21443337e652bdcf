//! What an import did, for the person at the terminal: counts per table, every row skipped or
//! altered and why, the lines nobody may miss, and what to run next.

use std::fmt::Write as _;

/// The tables of the old file, in the order they are imported and reported.
pub const TABLES: [&str; 8] = [
    "users",
    "message",
    "status",
    "category",
    "customization_key",
    "customization_value",
    "item",
    "order",
];

/// One table's tally.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// Rows in the old file.
    pub read: usize,
    /// Rows written (altered ones included).
    pub imported: usize,
    /// Rows written with a value changed (each has a line saying which and why).
    pub altered: usize,
    /// Rows not written (each has a line saying why).
    pub skipped: usize,
}

/// The whole report.
#[derive(Debug, Default)]
pub struct Report {
    /// Per table, in [`TABLES`] order.
    pub counts: [Count; 8],
    /// One line per skipped or altered row: `table id: skipped|altered: why`.
    pub rows: Vec<String>,
    /// Lines the reader must not miss (a locked admin, the way to unlock it), printed framed.
    pub loud: Vec<String>,
    /// Other things worth knowing that change no row (duplicated day numbers kept, ...).
    pub notes: Vec<String>,
    /// Images stored from `--images`.
    pub images: usize,
}

impl Report {
    fn count(&mut self, table: &str) -> &mut Count {
        let i = TABLES.iter().position(|t| *t == table).unwrap_or(0);
        &mut self.counts[i]
    }

    pub fn read(&mut self, table: &str) {
        self.count(table).read += 1;
    }

    /// A row to be written as it was.
    pub fn imported(&mut self, table: &str) {
        self.count(table).imported += 1;
    }

    /// A row to be written with a change; call once per row, with every reason.
    pub fn altered(&mut self, table: &str, id: i64, why: &[String]) {
        let count = self.count(table);
        count.imported += 1;
        count.altered += 1;
        self.rows
            .push(format!("{table} {id}: altered: {}", why.join("; ")));
    }

    pub fn skipped(&mut self, table: &str, id: impl std::fmt::Display, why: &str) {
        self.count(table).skipped += 1;
        self.rows.push(format!("{table} {id}: skipped: {why}"));
    }

    /// A row written as is or with changes, as `why` says.
    pub fn kept(&mut self, table: &str, id: i64, why: Vec<String>) {
        if why.is_empty() {
            self.imported(table);
        } else {
            self.altered(table, id, &why);
        }
    }

    /// The report as printed; `outcome` is the first line (what happened), `next` the last
    /// (the command to run).
    pub fn render(&self, outcome: &str, next: &[String]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{outcome}\n");
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:>9} {:>8} {:>8}",
            "table", "read", "imported", "altered", "skipped"
        );
        for (table, c) in TABLES.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{table:<20} {:>8} {:>9} {:>8} {:>8}",
                c.read, c.imported, c.altered, c.skipped
            );
        }
        if self.images > 0 {
            let _ = writeln!(out, "images stored: {}", self.images);
        }
        if !self.rows.is_empty() {
            let _ = writeln!(out, "\nRows skipped or altered ({}):", self.rows.len());
            for line in &self.rows {
                let _ = writeln!(out, "  {line}");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\nNotes:");
            for line in &self.notes {
                let _ = writeln!(out, "  {line}");
            }
        }
        if !self.loud.is_empty() {
            let bar = "!".repeat(78);
            let _ = writeln!(out, "\n{bar}");
            for line in &self.loud {
                let _ = writeln!(out, "!! {line}");
            }
            let _ = writeln!(out, "{bar}");
        }
        let _ = writeln!(out);
        for line in next {
            let _ = writeln!(out, "{line}");
        }
        out
    }
}

/// A progress line on a terminal: rewritten in place (`\r`), at most a few times a second,
/// so a file with a year of orders shows it is alive without flooding the screen. Silent
/// when standard error is not a terminal (piped, redirected, under systemd).
pub struct Progress {
    /// Whether anything is drawn at all.
    on: bool,
    /// When the line was last drawn, to draw at most every [`Progress::EVERY`].
    last: Option<std::time::Instant>,
    /// Whether a line is on the screen (and must be cleared before the report).
    drawn: bool,
}

impl Progress {
    const EVERY: std::time::Duration = std::time::Duration::from_millis(150);

    pub fn new(on: bool) -> Progress {
        Progress {
            on,
            last: None,
            drawn: false,
        }
    }

    /// On when standard error is a terminal.
    pub fn on_terminal() -> Progress {
        use std::io::IsTerminal;
        Progress::new(std::io::stderr().is_terminal())
    }

    /// `what done/total`, drawn unless drawn very recently (the last one is always drawn).
    pub fn tick(&mut self, what: &str, done: usize, total: usize) {
        if !self.on {
            return;
        }
        let now = std::time::Instant::now();
        let due = self
            .last
            .is_none_or(|t| now.duration_since(t) >= Self::EVERY);
        if !due && done < total {
            return;
        }
        self.last = Some(now);
        self.drawn = true;
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        eprint!("\r\x1b[K{what}: {done}/{total} ({percent}%)");
    }

    /// Clear the line.
    pub fn done(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[K");
            self.drawn = false;
        }
    }
}
