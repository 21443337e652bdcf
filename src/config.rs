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
}

impl Default for Database {
    fn default() -> Self {
        Database {
            path: PathBuf::from("kaffediem.db"),
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
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            session_days: 14,
            socket_token_seconds: 300,
            dev_auto_login: false,
            login_attempts_per_minute: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    /// Anyone may read every collection (the public display needs it).
    pub public_read: bool,
    /// Interim admin credential for `notifications:admin` (socket param `token`); empty = off.
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
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter directive.
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
            ConfigError(format!(
                "{}: {}",
                origin.display(),
                e.to_string().trim_end()
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
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return bad(
                "log.level",
                &format!("`{}` is not a log level or filter", self.log.level),
            );
        }
        Ok(())
    }

    /// The café's time zone (validated at load).
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.cafe.time_zone).unwrap_or(jiff::tz::TimeZone::UTC)
    }
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
    fn bad_time_zone_is_rejected() {
        let err =
            Config::parse("[cafe]\ntime_zone = \"Mars/Base\"\n", Path::new("k.toml")).unwrap_err();
        assert!(err.0.contains("cafe.time_zone"), "{err}");
    }

    #[test]
    fn documented_defaults_file_matches_built_in_defaults() {
        let text = include_str!("../kaffediem.toml");
        let parsed = Config::parse(text, Path::new("kaffediem.toml")).expect("parses");
        assert_eq!(parsed, Config::default());
    }
}
