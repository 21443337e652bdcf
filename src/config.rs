//! `kaffediem.toml`: where it is looked up, environment overrides, and validation (SPEC 8).
//! Every key has a built-in default, so the daemon runs with no file at all; an unknown key or
//! a bad value is an error that names the key and the file.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration. Field names are the TOML keys.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Config {
    pub http: Http,
    pub database: Database,
    pub cafe: Cafe,
    pub auth: Auth,
    pub access: Access,
    pub bootstrap: Bootstrap,
    pub limits: Limits,
    pub log: Log,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Address to listen on.
    pub bind: IpAddr,
    pub port: u16,
    /// Base of absolute URLs handed out (item images), e.g. `http://kaffediem.local:4000`.
    pub public_url: String,
    /// Frontend origins allowed for CORS and WebSocket upgrades.
    pub allowed_origins: Vec<String>,
    pub check_origin: bool,
    pub cookie_secure: bool,
    pub cookie_same_site: SameSite,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` / `Forwarded`
    /// headers name the client; empty: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// Addresses (IPs or CIDR ranges) allowed to read `/metrics` besides loopback and holders
    /// of `access.admin_token`.
    pub metrics_allowed: Vec<String>,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 4000,
            public_url: String::new(),
            allowed_origins: Vec::new(),
            check_origin: true,
            cookie_secure: false,
            cookie_same_site: SameSite::Lax,
            trusted_proxies: Vec::new(),
            metrics_allowed: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    pub path: PathBuf,
    /// Another process (Litestream) replicates the WAL and owns checkpointing: the daemon then
    /// never checkpoints (no automatic ones, none at shutdown), because a checkpoint of its own
    /// waits for that process's read lock and can reset the WAL under it.
    pub external_replication: bool,
}

impl Default for Database {
    fn default() -> Self {
        Database {
            path: PathBuf::from("kaffediem.db"),
            external_replication: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Cafe {
    /// IANA time zone of the café: local days for `day_id` and the `"today"` filter.
    pub time_zone: String,
}

impl Default for Cafe {
    fn default() -> Self {
        Cafe {
            time_zone: "Europe/Oslo".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    pub session_days: u32,
    pub socket_token_seconds: u32,
    pub dev_auto_login: bool,
    /// Failed logins allowed per client address and per email within a minute.
    pub login_attempts_per_minute: u32,
    /// Password checks (Argon2id, ~19 MiB each) computed at once; 0: one fewer than the CPU cores (at least one).
    pub password_checks: usize,
    /// Logins that may wait for a password check; past this, 429 at once.
    pub password_check_queue: usize,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            session_days: 14,
            socket_token_seconds: 300,
            dev_auto_login: false,
            login_attempts_per_minute: 10,
            password_checks: 0,
            password_check_queue: 8,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    /// Anyone may read every collection (the public display needs it).
    pub public_read: bool,
    /// Admin credential for scripts: socket param `token`, or `Authorization: Bearer` on
    /// HTTP; empty = off.
    pub admin_token: String,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            public_read: true,
            admin_token: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Bootstrap {
    pub admin_email: String,
    /// Empty: a random password is generated and printed once.
    pub admin_password: String,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            admin_email: "admin@kaffediem.local".into(),
            admin_password: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_sockets: usize,
    pub max_topics_per_socket: usize,
    pub max_message_bytes: usize,
    pub max_body_bytes: usize,
    pub max_upload_bytes: usize,
    pub outbound_queue: usize,
    pub idle_timeout_seconds: u64,
    pub header_timeout_seconds: u64,
    /// Hours of changes kept for clients resuming with `since` (0: always a full snapshot).
    pub change_log_hours: u32,
    /// Seconds a client has to send a whole request body, on every route (then 408).
    pub body_seconds: u64,
    /// Open TCP connections from one client address (trusted proxies exempt).
    pub max_connections_per_address: usize,
    /// Sockets (WebSocket and long-poll sessions) from one client address.
    pub max_sockets_per_address: usize,
    /// Joins one socket may make per minute (a token bucket: this many at once, refilled
    /// over a minute).
    pub joins_per_minute_per_socket: u32,
    /// Joins all sockets of one client address may make per minute (same bucket rule).
    pub joins_per_minute_per_address: u32,
    /// Days of orders in a `collection:order` snapshot (and an HTTP order list) that names no
    /// `from_date`.
    pub order_snapshot_days: u32,
    /// Records in one snapshot or unpaged HTTP list at most (the newest are kept).
    pub snapshot_max_records: usize,
    /// Lines (items) in one order.
    pub max_order_lines: usize,
    /// Size of one stored order record (its JSON), in bytes.
    pub max_order_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sockets: 10_000,
            max_topics_per_socket: 100,
            max_message_bytes: 64 * 1024,
            max_body_bytes: 1024 * 1024,
            max_upload_bytes: 5 * 1024 * 1024,
            outbound_queue: 1024,
            idle_timeout_seconds: 60,
            header_timeout_seconds: 10,
            change_log_hours: 24,
            body_seconds: 30,
            max_connections_per_address: 64,
            max_sockets_per_address: 32,
            joins_per_minute_per_socket: 100,
            joins_per_minute_per_address: 300,
            order_snapshot_days: 7,
            snapshot_max_records: 2000,
            max_order_lines: 50,
            max_order_bytes: 16 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `error`, `warn`, `info`, `debug`, `trace`, `off`, or per-module directives
    /// (`kaffediem=debug,info`); anything else is refused (see `is_log_level`).
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
        }
    }
}

/// A configuration problem, worded for the person editing the file.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Find and load the configuration: `explicit` (`--config`), else `$KAFFEDIEM_CONFIG`,
    /// else `./kaffediem.toml`, else the built-in defaults; then apply the environment
    /// overrides. Returns the file used, if any.
    pub fn load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => match std::env::var_os("KAFFEDIEM_CONFIG") {
                Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
                _ => {
                    let local = PathBuf::from("kaffediem.toml");
                    local.exists().then_some(local)
                }
            },
        };
        let mut config = match &path {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        config.apply_env()?;
        config.validate(path.as_deref())?;
        Ok((config, path))
    }

    /// Parse one file (no environment overrides).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        Config::parse(&text, path)
    }

    /// Parse TOML text; errors name `origin`.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            // One line (a log line, a start-up error): file, line, table, then what is wrong.
            let at = e
                .span()
                .map(|span| locate(text, span.start))
                .unwrap_or_default();
            ConfigError(format!(
                "{}{at}: {}",
                origin.display(),
                e.message().trim_end()
            ))
        })?;
        config.validate(Some(origin))?;
        Ok(config)
    }

    fn apply_env(&mut self) -> Result<(), ConfigError> {
        if let Some(v) = env_nonempty("KAFFEDIEM_PORT") {
            self.http.port = v
                .parse()
                .map_err(|_| ConfigError(format!("KAFFEDIEM_PORT: `{v}` is not a port number")))?;
        }
        if let Some(v) = env_nonempty("KAFFEDIEM_BIND") {
            self.http.bind = v
                .parse()
                .map_err(|_| ConfigError(format!("KAFFEDIEM_BIND: `{v}` is not an IP address")))?;
        }
        if let Some(v) = env_nonempty("KAFFEDIEM_DB") {
            self.database.path = PathBuf::from(v);
        }
        Ok(())
    }

    /// Checks serde cannot express: values that parse but make no sense.
    fn validate(&self, origin: Option<&Path>) -> Result<(), ConfigError> {
        let at = origin
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in defaults".into());
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{at}: {key}: {why}")));
        if jiff::tz::TimeZone::get(&self.cafe.time_zone).is_err() {
            return bad(
                "cafe.time_zone",
                &format!("`{}` is not a known IANA time zone", self.cafe.time_zone),
            );
        }
        for origin in &self.http.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return bad(
                    "http.allowed_origins",
                    &format!("`{origin}` must start with http:// or https://"),
                );
            }
        }
        for proxy in &self.http.trusted_proxies {
            if let Err(why) = crate::net::IpRange::parse(proxy) {
                return bad("http.trusted_proxies", &format!("`{proxy}`: {why}"));
            }
        }
        for allowed in &self.http.metrics_allowed {
            if let Err(why) = crate::net::IpRange::parse(allowed) {
                return bad("http.metrics_allowed", &format!("`{allowed}`: {why}"));
            }
        }
        let url = &self.http.public_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return bad("http.public_url", "must start with http:// or https://");
        }
        let l = &self.limits;
        for (key, value) in [
            ("limits.max_sockets", l.max_sockets),
            ("limits.max_topics_per_socket", l.max_topics_per_socket),
            ("limits.max_message_bytes", l.max_message_bytes),
            ("limits.max_body_bytes", l.max_body_bytes),
            ("limits.max_upload_bytes", l.max_upload_bytes),
            ("limits.outbound_queue", l.outbound_queue),
            (
                "limits.idle_timeout_seconds",
                l.idle_timeout_seconds as usize,
            ),
            (
                "limits.header_timeout_seconds",
                l.header_timeout_seconds as usize,
            ),
            ("limits.body_seconds", l.body_seconds as usize),
            (
                "limits.max_connections_per_address",
                l.max_connections_per_address,
            ),
            ("limits.max_sockets_per_address", l.max_sockets_per_address),
            (
                "limits.joins_per_minute_per_socket",
                l.joins_per_minute_per_socket as usize,
            ),
            (
                "limits.joins_per_minute_per_address",
                l.joins_per_minute_per_address as usize,
            ),
            ("limits.order_snapshot_days", l.order_snapshot_days as usize),
            ("limits.snapshot_max_records", l.snapshot_max_records),
            ("limits.max_order_lines", l.max_order_lines),
            ("limits.max_order_bytes", l.max_order_bytes),
            ("auth.password_check_queue", self.auth.password_check_queue),
        ] {
            if value == 0 {
                return bad(key, "must be greater than 0");
            }
        }
        if self.auth.session_days == 0 || self.auth.socket_token_seconds == 0 {
            return bad(
                "auth",
                "session_days and socket_token_seconds must be greater than 0",
            );
        }
        if !is_log_level(&self.log.level) {
            return bad(
                "log.level",
                &format!(
                    "`{}` is not a log level: use one of error, warn, info, debug, trace, off \
                     (or per-module directives such as `kaffediem=debug,info`)",
                    self.log.level
                ),
            );
        }
        Ok(())
    }

    /// The café's time zone (validated at load).
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.cafe.time_zone).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

/// The levels `log.level` accepts (in any case), alone or after `target=`.
const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// Whether `level` is a level name, or comma-separated directives each of which is a level
/// name or `target=level`. A tracing filter takes any word as a target name, so `warning`
/// would silently mean "only the target called warning" — all logging off — and is refused.
fn is_log_level(level: &str) -> bool {
    let is_level = |l: &str| LOG_LEVELS.iter().any(|k| k.eq_ignore_ascii_case(l.trim()));
    let is_target = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-')
    };
    !level.trim().is_empty()
        && level
            .split(',')
            .all(|directive| match directive.split_once('=') {
                None => is_level(directive),
                Some((target, l)) => is_target(target.trim()) && is_level(l),
            })
        && tracing_subscriber::EnvFilter::try_new(level).is_ok()
}

/// What a changed configuration file means for a running daemon (SPEC 8): the keys that
/// apply at once, the keys that need a restart, and the configuration to run with now.
#[derive(Debug, Clone, PartialEq)]
pub struct Reload {
    /// The new file's values for the keys that apply at once, the running values for the
    /// rest (restart-only keys keep what the daemon started with until it restarts).
    pub config: Config,
    /// Keys whose change applies at once, as `section.key`.
    pub applied: Vec<&'static str>,
    /// Keys whose change waits for a restart.
    pub needs_restart: Vec<&'static str>,
}

/// Copy `running` over `new`; returns whether they differed.
fn keep<T: PartialEq + Clone>(new: &mut T, running: &T) -> bool {
    let changed = new != running;
    *new = running.clone();
    changed
}

/// A key that applies while running: whether it differs between two configurations.
type LiveKey = (&'static str, fn(&Config, &Config) -> bool);
/// A key that waits for a restart: copies the running value into the new configuration and
/// says whether it differed.
type RestartKey = (&'static str, fn(&mut Config, &Config) -> bool);

/// Keys a running daemon applies at once: the socket endpoint's settings (origins and the
/// socket limits), access rules, the HTTP API's body limits, the session settings, and the
/// log level.
const LIVE_KEYS: &[LiveKey] = &[
    ("http.allowed_origins", |a, b| {
        a.http.allowed_origins != b.http.allowed_origins
    }),
    ("http.check_origin", |a, b| {
        a.http.check_origin != b.http.check_origin
    }),
    ("http.trusted_proxies", |a, b| {
        a.http.trusted_proxies != b.http.trusted_proxies
    }),
    ("access.public_read", |a, b| {
        a.access.public_read != b.access.public_read
    }),
    ("access.admin_token", |a, b| {
        a.access.admin_token != b.access.admin_token
    }),
    ("limits.max_sockets", |a, b| {
        a.limits.max_sockets != b.limits.max_sockets
    }),
    ("limits.max_topics_per_socket", |a, b| {
        a.limits.max_topics_per_socket != b.limits.max_topics_per_socket
    }),
    ("limits.max_message_bytes", |a, b| {
        a.limits.max_message_bytes != b.limits.max_message_bytes
    }),
    ("limits.outbound_queue", |a, b| {
        a.limits.outbound_queue != b.limits.outbound_queue
    }),
    ("limits.idle_timeout_seconds", |a, b| {
        a.limits.idle_timeout_seconds != b.limits.idle_timeout_seconds
    }),
    ("http.cookie_secure", |a, b| {
        a.http.cookie_secure != b.http.cookie_secure
    }),
    ("http.cookie_same_site", |a, b| {
        a.http.cookie_same_site != b.http.cookie_same_site
    }),
    ("auth.session_days", |a, b| {
        a.auth.session_days != b.auth.session_days
    }),
    ("auth.socket_token_seconds", |a, b| {
        a.auth.socket_token_seconds != b.auth.socket_token_seconds
    }),
    ("auth.login_attempts_per_minute", |a, b| {
        a.auth.login_attempts_per_minute != b.auth.login_attempts_per_minute
    }),
    ("limits.max_body_bytes", |a, b| {
        a.limits.max_body_bytes != b.limits.max_body_bytes
    }),
    ("limits.max_upload_bytes", |a, b| {
        a.limits.max_upload_bytes != b.limits.max_upload_bytes
    }),
    ("log.level", |a, b| a.log.level != b.log.level),
    ("http.metrics_allowed", |a, b| {
        a.http.metrics_allowed != b.http.metrics_allowed
    }),
    ("limits.body_seconds", |a, b| {
        a.limits.body_seconds != b.limits.body_seconds
    }),
    ("limits.max_connections_per_address", |a, b| {
        a.limits.max_connections_per_address != b.limits.max_connections_per_address
    }),
    ("limits.max_sockets_per_address", |a, b| {
        a.limits.max_sockets_per_address != b.limits.max_sockets_per_address
    }),
    ("limits.joins_per_minute_per_socket", |a, b| {
        a.limits.joins_per_minute_per_socket != b.limits.joins_per_minute_per_socket
    }),
    ("limits.joins_per_minute_per_address", |a, b| {
        a.limits.joins_per_minute_per_address != b.limits.joins_per_minute_per_address
    }),
    ("limits.order_snapshot_days", |a, b| {
        a.limits.order_snapshot_days != b.limits.order_snapshot_days
    }),
    ("limits.snapshot_max_records", |a, b| {
        a.limits.snapshot_max_records != b.limits.snapshot_max_records
    }),
    ("limits.max_order_lines", |a, b| {
        a.limits.max_order_lines != b.limits.max_order_lines
    }),
    ("limits.max_order_bytes", |a, b| {
        a.limits.max_order_bytes != b.limits.max_order_bytes
    }),
];

/// Keys read once at start: the listening socket, the database file and who checkpoints it, the time zone that
/// numbers orders, the base of image URLs (baked into broadcast records), the first admin,
/// `dev_auto_login` (checked against the bind address at start), the change log's length
/// and the HTTP header timeout.
const RESTART_KEYS: &[RestartKey] = &[
    ("http.bind", |n, r| keep(&mut n.http.bind, &r.http.bind)),
    ("http.port", |n, r| keep(&mut n.http.port, &r.http.port)),
    ("http.public_url", |n, r| {
        keep(&mut n.http.public_url, &r.http.public_url)
    }),
    ("database.path", |n, r| {
        keep(&mut n.database.path, &r.database.path)
    }),
    ("database.external_replication", |n, r| {
        keep(
            &mut n.database.external_replication,
            &r.database.external_replication,
        )
    }),
    ("cafe.time_zone", |n, r| {
        keep(&mut n.cafe.time_zone, &r.cafe.time_zone)
    }),
    ("auth.dev_auto_login", |n, r| {
        keep(&mut n.auth.dev_auto_login, &r.auth.dev_auto_login)
    }),
    ("bootstrap.admin_email", |n, r| {
        keep(&mut n.bootstrap.admin_email, &r.bootstrap.admin_email)
    }),
    ("bootstrap.admin_password", |n, r| {
        keep(&mut n.bootstrap.admin_password, &r.bootstrap.admin_password)
    }),
    ("limits.change_log_hours", |n, r| {
        keep(&mut n.limits.change_log_hours, &r.limits.change_log_hours)
    }),
    ("limits.header_timeout_seconds", |n, r| {
        keep(
            &mut n.limits.header_timeout_seconds,
            &r.limits.header_timeout_seconds,
        )
    }),
    ("auth.password_checks", |n, r| {
        keep(&mut n.auth.password_checks, &r.auth.password_checks)
    }),
    ("auth.password_check_queue", |n, r| {
        keep(
            &mut n.auth.password_check_queue,
            &r.auth.password_check_queue,
        )
    }),
];

impl Config {
    /// Compare the running configuration (`self`) with a freshly loaded `new` one.
    pub fn reload(&self, mut new: Config) -> Reload {
        let needs_restart = RESTART_KEYS
            .iter()
            .filter_map(|(key, keep)| keep(&mut new, self).then_some(*key))
            .collect();
        let applied = LIVE_KEYS
            .iter()
            .filter_map(|(key, differs)| differs(&new, self).then_some(*key))
            .collect();
        Reload {
            config: new,
            applied,
            needs_restart,
        }
    }
}

/// `, line N ([table])` for the byte `offset` of a TOML text.
fn locate(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let table = before
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with('['))
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    format!(", line {line}{table}")
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_key_and_file() {
        let err = Config::parse("[http]\nprot = 4000\n", Path::new("/etc/k.toml")).unwrap_err();
        assert!(err.0.contains("/etc/k.toml"), "{err}");
        assert!(err.0.contains("prot"), "{err}");
    }

    #[test]
    fn parse_errors_are_one_line_with_line_and_table() {
        let err = Config::parse(
            "[log]\nlevel = 'info'\n[http]\nport = 'x'\n",
            Path::new("k.toml"),
        )
        .unwrap_err();
        assert!(!err.0.contains('\n'), "{err}");
        assert!(err.0.starts_with("k.toml, line 4 ([http]): "), "{err}");
    }

    #[test]
    fn log_level_typos_are_refused_and_directives_accepted() {
        for bad in ["warning", "bogus!!", "", "info,", "kaffediem=loud", "=info"] {
            assert!(!is_log_level(bad), "{bad:?} was accepted");
        }
        for good in [
            "info",
            "WARN",
            " debug ",
            "kaffediem=debug,info",
            "off",
            "tower_http::x=trace",
        ] {
            assert!(is_log_level(good), "{good:?} was refused");
        }
    }

    #[test]
    fn bad_time_zone_is_rejected() {
        let err =
            Config::parse("[cafe]\ntime_zone = \"Mars/Base\"\n", Path::new("k.toml")).unwrap_err();
        assert!(err.0.contains("cafe.time_zone"), "{err}");
    }

    #[test]
    fn bad_trusted_proxy_names_the_key_and_the_value() {
        let err = Config::parse(
            "[http]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/33\"]\n",
            Path::new("k.toml"),
        )
        .unwrap_err();
        assert!(err.0.starts_with("k.toml: http.trusted_proxies: "), "{err}");
        assert!(err.0.contains("`10.0.0.0/33`"), "{err}");
        let err = Config::parse(
            "[http]\ntrusted_proxies = [\"nginx\"]\n",
            Path::new("k.toml"),
        )
        .unwrap_err();
        assert!(err.0.contains("`nginx`"), "{err}");
        let ok =
            "[http]\ntrusted_proxies = [\"127.0.0.1\", \"::1\", \"10.0.0.0/8\", \"fd00::/8\"]\n";
        assert!(Config::parse(ok, Path::new("k.toml")).is_ok());
    }

    #[test]
    fn documented_defaults_file_matches_built_in_defaults() {
        let text = include_str!("../kaffediem.toml");
        let parsed = Config::parse(text, Path::new("kaffediem.toml")).expect("parses");
        assert_eq!(parsed, Config::default());
    }

    /// Changing (nearly) every key reports each as applied or needing a restart, and the
    /// configuration to run with takes exactly the live ones.
    #[test]
    fn reload_sorts_every_key_into_applied_or_needs_restart() {
        let running = Config::default();
        let text = r#"
            [http]
            bind = "127.0.0.1"
            port = 4001
            public_url = "http://pi:4001"
            allowed_origins = ["https://kaffediem.example"]
            check_origin = false
            cookie_secure = true
            cookie_same_site = "Strict"
            trusted_proxies = ["127.0.0.1", "::1", "10.0.0.0/8"]
            metrics_allowed = ["192.168.1.10"]
            [database]
            path = "other.db"
            external_replication = true
            [cafe]
            time_zone = "UTC"
            [auth]
            session_days = 1
            socket_token_seconds = 1
            dev_auto_login = true
            login_attempts_per_minute = 1
            password_checks = 1
            password_check_queue = 1
            [access]
            public_read = false
            admin_token = "x"
            [bootstrap]
            admin_email = "a@b.c"
            admin_password = "p"
            [limits]
            max_sockets = 1
            max_topics_per_socket = 1
            max_message_bytes = 1
            max_body_bytes = 1
            max_upload_bytes = 1
            outbound_queue = 1
            idle_timeout_seconds = 1
            header_timeout_seconds = 1
            body_seconds = 1
            max_connections_per_address = 1
            max_sockets_per_address = 1
            joins_per_minute_per_socket = 1
            joins_per_minute_per_address = 1
            order_snapshot_days = 1
            snapshot_max_records = 1
            max_order_lines = 1
            max_order_bytes = 1
            [log]
            level = "debug"
        "#;
        let new = Config::parse(text, Path::new("k.toml")).expect("parses");
        let reload = running.reload(new.clone());
        assert_eq!(reload.applied.len() + reload.needs_restart.len(), 40);
        assert!(reload.needs_restart.contains(&"http.port"));
        assert!(reload.applied.contains(&"http.allowed_origins"));

        let mut expected = running.clone();
        expected.http.allowed_origins = new.http.allowed_origins.clone();
        expected.http.check_origin = new.http.check_origin;
        expected.http.trusted_proxies = new.http.trusted_proxies.clone();
        expected.access = new.access.clone();
        expected.http.cookie_secure = true;
        expected.http.cookie_same_site = SameSite::Strict;
        expected.auth.session_days = 1;
        expected.auth.socket_token_seconds = 1;
        expected.auth.login_attempts_per_minute = 1;
        expected.log = new.log.clone();
        expected.http.metrics_allowed = new.http.metrics_allowed.clone();
        expected.limits = Limits {
            change_log_hours: running.limits.change_log_hours,
            header_timeout_seconds: running.limits.header_timeout_seconds,
            ..new.limits.clone()
        };
        assert_eq!(reload.config, expected);
    }

    /// A key added to `kaffediem.toml` (which documents every key) must be sorted into
    /// applied-at-once or needs-a-restart, or reload would silently ignore its edits.
    #[test]
    fn every_documented_key_is_either_live_or_restart_only() {
        let doc: toml::Table = toml::from_str(include_str!("../kaffediem.toml")).expect("toml");
        let mut documented: Vec<String> = doc
            .iter()
            .flat_map(|(section, keys)| {
                let keys = keys.as_table().expect("a table per section");
                keys.keys().map(move |k| format!("{section}.{k}"))
            })
            .collect();
        documented.sort();
        let mut sorted: Vec<String> = LIVE_KEYS
            .iter()
            .map(|(k, _)| k.to_string())
            .chain(RESTART_KEYS.iter().map(|(k, _)| k.to_string()))
            .collect();
        sorted.sort();
        assert_eq!(documented, sorted);
    }

    #[test]
    fn reload_of_an_unchanged_file_changes_nothing() {
        let running = Config::default();
        let reload = running.reload(running.clone());
        assert!(reload.applied.is_empty() && reload.needs_restart.is_empty());
        assert_eq!(reload.config, running);
    }
}
