//! `kaffediem`: the command line. Wiring only; the work happens in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use kaffediem::clock::SystemClock;
use kaffediem::config::Config;
use kaffediem::server;

#[derive(Parser)]
#[command(
    version,
    about = "Café ordering backend: one SQLite file, realtime screens"
)]
struct Cli {
    /// Configuration file (else $KAFFEDIEM_CONFIG, else ./kaffediem.toml, else defaults).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and the realtime socket (the default).
    Serve {
        /// Fill an empty database with the demo café first.
        #[arg(long)]
        demo: bool,
    },
    /// Load the demo café into an empty database, then exit.
    Demo {
        /// Also write this many past orders, spread over the weekdays before today (300–600 a
        /// day, as a café leaves them): a database with a school year of history (~120 000)
        /// to try and measure against. Refused when the database already has orders.
        #[arg(long, value_name = "N", default_value_t = 0)]
        history: u64,
    },
    /// Copy the database to FILE, consistently, while the daemon keeps serving.
    Backup {
        /// Where to write the copy (refused if it exists, unless --force).
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Check the database: integrity, references, schema version. Exit status 1 on trouble.
    Check,
    /// Manage accounts (safe while the daemon runs).
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
    /// Bring a café's data over from another backend (safe while the daemon runs).
    Import {
        #[command(subcommand)]
        from: ImportCommand,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Import users, menu, messages, status and every order from the old backend's SQLite
    /// file (Kaffebase), keeping ids. The file is only read. Prints a report: counts per table,
    /// every row skipped or altered and why.
    Kaffebase {
        /// The old backend's database file (its DATABASE_PATH, e.g. kaffebase_prod.db).
        path: PathBuf,
        /// Replace the café data and accounts this database already has.
        #[arg(long)]
        replace: bool,
        /// Print the report without writing anything.
        #[arg(long)]
        dry_run: bool,
        /// Directory holding the files of items whose image is a local path.
        #[arg(long, value_name = "DIR")]
        images: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. The password is prompted for twice on a terminal, else read as one line
    /// of standard input (never from the command line, where `ps` would show it).
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        username: Option<String>,
        /// May do everything: edit the menu, update orders, join notifications:admin.
        #[arg(long)]
        admin: bool,
    },
    /// Set a user's password (read as for `add`) and end all their sessions.
    Passwd {
        #[arg(long)]
        email: String,
    },
    /// List users: id, email, name, admin.
    List,
}

fn main() -> ExitCode {
    kaffediem::ops::memory::tune_allocator();
    let cli = Cli::parse();
    let (config, config_path) = match Config::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("kaffediem: {e}");
            return ExitCode::from(2);
        }
    };
    kaffediem::ops::logging::init(&config.log.level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kaffediem: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve { demo: false }) {
            Command::Serve { demo } => serve(config, config_path, demo).await,
            Command::Demo { history } => demo_only(config, history).await,
            Command::Backup { file, force } => backup(&config, &file, force),
            Command::Check => check(&config),
            Command::User { action } => user(config, action).await,
            Command::Import { from } => import(&config, config_path.as_deref(), from),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line on stderr, which journald keeps as well.
            eprintln!("kaffediem: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: Config,
    config_path: Option<PathBuf>,
    demo: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let running = server::start(server::Options {
        config,
        config_path,
        clock: Arc::new(SystemClock),
        demo,
    })
    .await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn demo_only(config: Config, history: u64) -> Result<(), Box<dyn std::error::Error>> {
    use kaffediem::store::{self, Store, StoreOptions};
    let options = StoreOptions {
        path: config.database.path.clone(),
        readers: 1,
        records: Default::default(),
    };
    let (store, _feed) = Store::open(options, Arc::new(SystemClock))?;
    if config.database.external_replication {
        store::replication::leave_checkpoints_to_replicator(&store.writer).await?;
    }
    let loaded = store::demo::load(&store.writer).await?;
    store.shutdown().await?;
    if loaded {
        println!(
            "loaded the demo café into {}",
            config.database.path.display()
        );
    } else {
        println!(
            "{} already has a menu; nothing loaded",
            config.database.path.display()
        );
    }
    if history > 0 {
        // Outside the writer: one transaction of up to millions of rows on a connection of
        // its own, seen by a running daemon as one foreign commit.
        let mut conn = store::schema::open_connection(&config.database.path)?;
        let tx = conn.transaction()?;
        let written = store::demo::history(
            &tx,
            history,
            jiff::Timestamp::now(),
            &config.time_zone(),
            rand::random(),
        )?;
        tx.commit()?;
        println!(
            "wrote {} past orders over {} days into {}",
            written.orders,
            written.days,
            config.database.path.display()
        );
    }
    Ok(())
}

fn backup(config: &Config, file: &Path, force: bool) -> Result<(), Box<dyn std::error::Error>> {
    let done = kaffediem::ops::backup::backup(&config.database.path, file, force)?;
    println!(
        "backed up {} to {} ({} bytes, schema version {}, integrity ok)",
        config.database.path.display(),
        done.file.display(),
        done.bytes,
        done.schema_version
    );
    Ok(())
}

fn check(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    let report = kaffediem::ops::check::check(
        &config.database.path,
        kaffediem::store::schema::SCHEMA_VERSION,
    )?;
    print!("{}", report.render());
    let trouble = report.trouble();
    if trouble.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}", config.database.path.display(), trouble.join("; ")).into())
    }
}

fn import(
    config: &Config,
    config_path: Option<&Path>,
    from: ImportCommand,
) -> Result<(), Box<dyn std::error::Error>> {
    let ImportCommand::Kaffebase {
        path,
        replace,
        dry_run,
        images,
    } = from;
    let time_zone = jiff::tz::TimeZone::get(&config.cafe.time_zone)?;
    let options = kaffediem::import::Options {
        source: path,
        target: config.database.path.clone(),
        replace,
        dry_run,
        images,
        max_image_bytes: config.limits.max_upload_bytes,
        time_zone,
        serve_command: serve_command(config, config_path),
    };
    let mut progress = kaffediem::import::Progress::on_terminal();
    let report = kaffediem::import::kaffebase(&options, &mut progress);
    progress.done();
    print!("{}", report?);
    Ok(())
}

/// The exact command that serves `config`'s database: the configuration file it was read
/// from, and the database given by `KAFFEDIEM_DB` when that is where it came from.
fn serve_command(config: &Config, config_path: Option<&Path>) -> String {
    let quote = |p: &Path| {
        let s = p.display().to_string();
        if s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@=".contains(c))
        {
            s
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    let mut command = String::new();
    if std::env::var_os("KAFFEDIEM_DB").is_some() {
        command.push_str(&format!("KAFFEDIEM_DB={} ", quote(&config.database.path)));
    }
    command.push_str("kaffediem ");
    if let Some(path) = config_path {
        command.push_str(&format!("--config {} ", quote(path)));
    }
    command.push_str("serve");
    command
}

async fn user(config: Config, action: UserCommand) -> Result<(), Box<dyn std::error::Error>> {
    use kaffediem::accounts::{self, NewUser};
    use kaffediem::store::{Store, StoreOptions};
    // Ask before opening anything, so a mistyped password leaves no trace.
    let password = match &action {
        UserCommand::Add { .. } | UserCommand::Passwd { .. } => Some(read_password()?),
        UserCommand::List => None,
    };
    let options = StoreOptions {
        path: config.database.path.clone(),
        readers: 1,
        records: Default::default(),
    };
    // WAL lets this run next to the daemon, which sees the change as a foreign write.
    let (store, _feed) = Store::open(options, Arc::new(SystemClock))?;
    if config.database.external_replication {
        kaffediem::store::replication::leave_checkpoints_to_replicator(&store.writer).await?;
    }
    let password = password.unwrap_or_default();
    let result = match action {
        UserCommand::Add {
            email,
            name,
            username,
            admin,
        } => {
            let new = NewUser {
                email,
                name,
                username,
                is_admin: admin,
            };
            accounts::add(&store.writer, new, &password)
                .await
                .map(|u| println!("created user {} <{}>", u.id, u.email))
        }
        UserCommand::Passwd { email } => accounts::set_password(&store.writer, &email, &password)
            .await
            .map(|u| {
                println!(
                    "changed the password of {}; their sessions are ended",
                    u.email
                )
            }),
        UserCommand::List => accounts::list(&store.readers).await.map(|users| {
            println!("{:>5}  {:<32}  {:<24}  admin", "id", "email", "name");
            for u in users {
                let admin = if u.is_admin { "yes" } else { "no" };
                println!("{:>5}  {:<32}  {:<24}  {admin}", u.id, u.email, u.name);
            }
        }),
    };
    store.shutdown().await?;
    Ok(result?)
}

/// A new password: prompted twice without echo on a terminal, else one line of stdin.
fn read_password() -> Result<String, Box<dyn std::error::Error>> {
    use std::io::{BufRead, IsTerminal};
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New password: ")?;
        let again = rpassword::prompt_password("Repeat the password: ")?;
        if first != again {
            return Err("the two passwords differ; nothing changed".into());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    kaffediem::accounts::check_password(&password)?;
    Ok(password)
}

/// SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
