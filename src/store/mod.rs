//! Storage on sqlx: SQLite by default (zero setup, one file, WAL mode) and
//! PostgreSQL for several nodes, through the same code and the same SQL.
//!
//! This module owns the schema (`migrations/sqlite`, `migrations/postgres`,
//! embedded in the binary), the connection pool, and every query. It keeps the
//! guarantees that must hold across processes in the database itself: unique
//! normalised phone numbers, one live claim per owner and slot start, one lead
//! per `call_sid`, one outbox row per idempotency key.
//!
//! It must not hold business rules (which times are bookable, how a phone
//! number is normalised: see [`crate::booking`] and [`crate::crm`]), must not
//! read the wall clock (every write takes `now`), and must not log personal
//! data (phone numbers and names only ever appear inside [`crate::pii::Pii`]).
//!
//! Timestamps are stored as UTC milliseconds since the Unix epoch (`*_ms`
//! columns), so both backends compare them identically.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config_error::ConfigError;

/// Run `$body` with `$p` bound to the concrete pool of either backend. The body
/// is compiled once per backend, so the same SQL text and row types serve both.
macro_rules! on_pool {
    ($store:expr, |$p:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($p) => $body,
            $crate::store::Pool::Postgres($p) => $body,
        }
    };
}

/// Run `$body` inside one transaction on either backend; it commits when the
/// body finishes, and rolls back if the body returns early (`?` or `return`).
/// SQLite transactions start with `BEGIN IMMEDIATE` so concurrent writers
/// queue on the write lock (busy timeout) instead of failing mid-transaction.
macro_rules! in_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite(pool) => {
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            $crate::store::Pool::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

mod claims;
mod dashboard;
mod delivery;
mod outbox;
mod outcomes;
mod records;
mod routing;
mod sessions;
mod slots;

pub use claims::{ClaimResult, LeadCard, LeadClaim};
pub use dashboard::{CallBucket, LeadFact, BUCKET_MS};
pub use delivery::CallFacts;
pub use outbox::{OutboxItem, OutboxStatus};
pub use outcomes::{ContactHistory, LeadOutcome};
pub use records::{
    ActivityRecord, CallEventRecord, CallRecord, ContactRecord, IngestOutcome, LeadFilter,
    LeadRecord, NewCall, NewContact, NewLead,
};
pub use routing::{CallRef, HandoffEvent, VoicemailRef, HANDOFF_KIND, TRANSFER_KIND};
pub use sessions::{CallWrite, Speaker, ToolClaim, TurnRow};
pub use slots::{
    BookingRecord, CancelOutcome, ClaimOutcome, ConfirmOutcome, HoldRecord, HoldStatus, NewBooking,
    ReleaseOutcome,
};

/// The URL used when neither `[storage] url` nor `FRONTDESK_DATABASE_URL` is set.
pub const DEFAULT_URL: &str = "sqlite://frontdesk.db";

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://path.db` or `postgres://user@host/db` (default: unset, which
    /// means `sqlite://frontdesk.db`). `FRONTDESK_DATABASE_URL` overrides it.
    pub url: Option<String>,
    /// Largest number of pooled database connections (default 10, 1–200).
    pub max_connections: u32,
    /// Milliseconds a query waits for a connection or, on SQLite, for the
    /// write lock before it fails (default 10000, 100–600000).
    pub busy_timeout_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: None,
            max_connections: 10,
            busy_timeout_ms: 10_000,
        }
    }
}

impl StorageConfig {
    /// Range and format checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.url {
            check_url(url).map_err(|m| ConfigError::invalid("storage.url", m))?;
        }
        if !(1..=200).contains(&self.max_connections) {
            return Err(ConfigError::invalid(
                "storage.max_connections",
                format!("{} is out of range; allowed 1–200", self.max_connections),
            ));
        }
        if !(100..=600_000).contains(&self.busy_timeout_ms) {
            return Err(ConfigError::invalid(
                "storage.busy_timeout_ms",
                format!(
                    "{} is out of range; allowed 100–600000 ms",
                    self.busy_timeout_ms
                ),
            ));
        }
        Ok(())
    }
}

/// Whether `url` names a database frontdesk can use; the message says what
/// is wrong. A SQLite URL needs a file path (`sqlite://frontdesk.db`) or
/// `sqlite::memory:`: an empty path would give every pooled connection a
/// private temporary database, and writes would vanish.
pub fn check_url(url: &str) -> Result<(), String> {
    let url = url.trim();
    match Backend::of_url(url) {
        None => Err(format!(
            "`{}` must start with `sqlite:` or `postgres://` (or `postgresql://`)",
            redact_url(url)
        )),
        Some(Backend::Sqlite) => {
            let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
            let path = rest.split('?').next().unwrap_or("");
            if path.is_empty() && !url.contains("mode=memory") {
                Err(format!(
                    "`{url}` has no file path (write sqlite://frontdesk.db, or sqlite::memory: for a throw-away database)"
                ))
            } else {
                SqliteConnectOptions::from_str(url)
                    .map(|_| ())
                    .map_err(|e| format!("`{url}`: {}", cause(&e)))
            }
        }
        Some(Backend::Postgres) => {
            let rest = url.split_once("://").map(|(_, r)| r).unwrap_or("");
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            if host.is_empty() || host.starts_with('/') || host.starts_with('?') {
                Err(format!("`{}` names no host", redact_url(url)))
            } else {
                // What connecting would parse (port, options), refused now
                // rather than at connect time.
                PgConnectOptions::from_str(url)
                    .map(|_| ())
                    .map_err(|e| format!("`{}`: {}", redact_url(url), cause(&e)))
            }
        }
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres://`.
    #[error("unsupported database URL (expected sqlite: or postgres://): {0}")]
    UnsupportedUrl(String),
    /// The database could not be reached or opened at start-up.
    #[error("cannot connect to {target}: {cause}")]
    Connect {
        /// `PostgreSQL at host:port` or `SQLite file PATH` (never a password).
        target: String,
        /// The innermost reason (`connection refused`, `password
        /// authentication failed …`), said once.
        cause: String,
    },
    /// The database refused or failed a query, or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed or the database has a newer schema than this binary.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be read back (a bug or a hand-edited row).
    #[error("corrupt stored value in {table}.{column}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// Column name.
        column: &'static str,
    },
}

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file (or `sqlite::memory:`).
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Backend {
    /// Detect the backend from the URL scheme.
    pub fn of_url(url: &str) -> Option<Backend> {
        let url = url.trim();
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// The pool of one backend.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A handle to the database. Cheap to clone (it is a pool).
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: Pool,
}

/// What [`migrate`] did.
#[derive(Debug, Clone)]
pub struct MigrateReport {
    /// Backend migrated.
    pub backend: Backend,
    /// The URL with any password masked.
    pub url: String,
    /// Migrations applied by this run (version, description).
    pub applied: Vec<(i64, String)>,
    /// Migrations the database already had.
    pub already: usize,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Mask the password of a database URL for printing (`postgres://u:***@h/db`),
/// in the user info and in a `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let masked = redact_userinfo(url);
    match masked.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => masked,
    }
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}://{}:***{}",
            &url[..scheme_end],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// Connect to `url` and apply every pending migration. This is what
/// `frontdesk migrate` runs; [`Store::connect`] does the same on start-up.
pub async fn migrate(url: &str, cfg: &StorageConfig) -> Result<MigrateReport, StoreError> {
    let store = Store::connect_only(url, cfg).await?;
    let report = store.run_migrations(url).await;
    store.close().await;
    report
}

impl Store {
    /// Connect and migrate. SQLite files are created if missing and put in
    /// WAL mode.
    pub async fn connect(url: &str, cfg: &StorageConfig) -> Result<Store, StoreError> {
        let store = Store::connect_only(url, cfg).await?;
        store.run_migrations(url).await?;
        Ok(store)
    }

    /// Connect without migrating.
    ///
    /// One connection is opened first, on its own: the pool would retry a
    /// refused connection until its acquire timeout and then report only
    /// that it timed out, while this reports the cause at once (and waits at
    /// most [`CONNECT_TIMEOUT`] for a host that does not answer).
    pub async fn connect_only(url: &str, cfg: &StorageConfig) -> Result<Store, StoreError> {
        let timeout = Duration::from_millis(cfg.busy_timeout_ms.max(100));
        let max = cfg.max_connections.max(1);
        match Backend::of_url(url) {
            Some(Backend::Sqlite) => {
                let opts = SqliteConnectOptions::from_str(url.trim())
                    .map_err(|e| connect_error(format!("SQLite {}", redact_url(url)), &e))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(timeout)
                    .foreign_keys(true);
                // Each connection to `sqlite::memory:` is its own database:
                // keep exactly one, forever.
                let memory = url.contains(":memory:") || url.contains("mode=memory");
                if !memory {
                    let target = format!("SQLite file {}", opts.get_filename().display());
                    probe::<sqlx::SqliteConnection>(&opts, &target).await?;
                }
                let pool = SqlitePoolOptions::new()
                    .max_connections(if memory { 1 } else { max })
                    .min_connections(if memory { 1 } else { 0 })
                    .idle_timeout(if memory {
                        None
                    } else {
                        Some(Duration::from_secs(600))
                    })
                    .max_lifetime(if memory {
                        None
                    } else {
                        Some(Duration::from_secs(1800))
                    })
                    .acquire_timeout(timeout)
                    .connect_with(opts)
                    .await?;
                Ok(Store {
                    pool: Pool::Sqlite(pool),
                })
            }
            Some(Backend::Postgres) => {
                let opts = PgConnectOptions::from_str(url.trim())
                    .map_err(|e| connect_error(format!("PostgreSQL {}", redact_url(url)), &e))?;
                // Named from the parsed options, so no password (in the
                // user info or a `password=` parameter) can be in it.
                let target = format!(
                    "PostgreSQL at {}:{} (database {}, user {})",
                    opts.get_host(),
                    opts.get_port(),
                    opts.get_database().unwrap_or("(default)"),
                    opts.get_username()
                );
                probe::<sqlx::PgConnection>(&opts, &target).await?;
                let pool = PgPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(timeout)
                    .connect_with(opts)
                    .await?;
                Ok(Store {
                    pool: Pool::Postgres(pool),
                })
            }
            None => Err(StoreError::UnsupportedUrl(redact_url(url))),
        }
    }

    async fn run_migrations(&self, url: &str) -> Result<MigrateReport, StoreError> {
        let migrator = match &self.pool {
            Pool::Sqlite(_) => &SQLITE_MIGRATIONS,
            Pool::Postgres(_) => &POSTGRES_MIGRATIONS,
        };
        // Absent on a fresh database: then nothing was applied before.
        let before: Result<Vec<(i64,)>, sqlx::Error> = on_pool!(self, |p| {
            sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(p)
                .await
        });
        let applied_before: Vec<i64> = before
            .map(|rows| rows.into_iter().map(|(v,)| v).collect())
            .unwrap_or_default();
        match &self.pool {
            Pool::Sqlite(p) => migrator.run(p).await?,
            Pool::Postgres(p) => migrator.run(p).await?,
        }
        let applied: Vec<(i64, String)> = migrator
            .iter()
            .filter(|m| !applied_before.contains(&m.version))
            .map(|m| (m.version, m.description.to_string()))
            .collect();
        Ok(MigrateReport {
            backend: self.backend(),
            url: redact_url(url),
            already: migrator.iter().count() - applied.len(),
            applied,
        })
    }

    /// Which backend this store talks to.
    pub fn backend(&self) -> Backend {
        match &self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Close every pooled connection (waits for checked-out ones).
    pub async fn close(&self) {
        on_pool!(self, |p| p.close().await)
    }

    /// `SELECT 1`: is the database reachable? (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query("SELECT 1").execute(p).await?;
        });
        Ok(())
    }
}

/// Longest wait for the first connection of [`Store::connect`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Open and close one connection, so a failure is reported with its cause.
async fn probe<C: sqlx::Connection>(
    opts: &<C as sqlx::Connection>::Options,
    target: &str,
) -> Result<(), StoreError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, C::connect_with(opts)).await {
        Ok(Ok(c)) => {
            // Closing politely can fail on a flaky link; the pool opens its own.
            let _ = c.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(connect_error(target.to_string(), &e)),
        Err(_) => Err(StoreError::Connect {
            target: target.to_string(),
            cause: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        }),
    }
}

fn connect_error(target: String, e: &sqlx::Error) -> StoreError {
    StoreError::Connect {
        target,
        cause: cause(e),
    }
}

/// The innermost reason of a connect error, said once: sqlx wraps some
/// errors in prefixes that repeat the inner message ("error with
/// configuration: error with configuration: …").
fn cause(e: &sqlx::Error) -> String {
    let text = match e {
        sqlx::Error::Configuration(inner) | sqlx::Error::Tls(inner) => {
            match inner.downcast_ref::<sqlx::Error>() {
                Some(nested) => cause(nested),
                None => inner.to_string(),
            }
        }
        sqlx::Error::Database(db) => db.message().to_string(),
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is the server running and listening on that port?)".to_string()
        }
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in text.lines().flat_map(|l| l.split(": ")) {
        let p = p.trim();
        if !p.is_empty() && parts.last() != Some(&p) {
            parts.push(p);
        }
    }
    parts.join(": ")
}

/// UTC milliseconds since the epoch, the stored form of every timestamp.
pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Read back a stored timestamp.
pub(crate) fn from_ms(
    ms: i64,
    table: &'static str,
    column: &'static str,
) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or(StoreError::Corrupt { table, column })
}

/// A fresh random id (UUID v4 text).
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_urls_are_refused_with_the_reason() {
        for ok in [
            "sqlite://frontdesk.db",
            "sqlite:frontdesk.db",
            "sqlite::memory:",
            "sqlite:///tmp/x.db?mode=rwc",
            "postgres://u@h/db",
            "postgresql://h:5432/db",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("postgres://u:pw@h:notaport/db", "invalid port"),
            ("sqlite://x.db?mode=bogus", "unknown value"),
            ("sqlite://", "no file path"),
            ("sqlite:", "no file path"),
            ("sqlite://?mode=rwc", "no file path"),
            ("postgres://", "no host"),
            ("postgres://u:pw@/db", "no host"),
            ("mysql://x", "must start with"),
            ("postgres://u:pw@h/db?sslmode=bogus", "unknown value"),
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("error with configuration"), "{bad}: {e}");
            assert!(!e.contains("pw@"), "password shown: {e}");
        }
    }

    #[test]
    fn bad_url_names_the_key() {
        let cfg = StorageConfig {
            url: Some("mysql://x".into()),
            ..StorageConfig::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("storage.url"), "{e}");
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact_url("postgres://u:hunter2@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite://frontdesk.db"), "sqlite://frontdesk.db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&password=hunter2"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
    }

    /// PostgreSQL on a closed port: the error comes at once (not after the
    /// pool's acquire timeout), on one line naming host:port and the cause,
    /// with the password masked and nothing said twice.
    #[tokio::test]
    async fn closed_postgres_port_fails_fast_naming_host_and_cause() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("postgres://fd:hunter2@127.0.0.1:{port}/frontdesk");
        let started = std::time::Instant::now();
        let e = Store::connect(&url, &StorageConfig::default())
            .await
            .expect_err("nothing listens there");
        let took = started.elapsed();
        let msg = e.to_string();
        assert!(took < Duration::from_secs(5), "took {took:?}: {msg}");
        assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
        assert!(msg.to_lowercase().contains("refused"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
        let parts: Vec<&str> = msg.split(": ").collect();
        assert!(
            parts.windows(2).all(|w| w[0] != w[1]),
            "repeats itself: {msg}"
        );
        let url_q = format!("postgres://fd@127.0.0.1:{port}/frontdesk?password=hunter2");
        let e = Store::connect(&url_q, &StorageConfig::default())
            .await
            .expect_err("refused");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        // Migrate says the same.
        let e = migrate(&url, &StorageConfig::default())
            .await
            .expect_err("refused");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    }

    #[tokio::test]
    async fn unopenable_sqlite_file_names_the_path_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/no/such/dir/fd.db", dir.path().display());
        let started = std::time::Instant::now();
        let e = Store::connect(&url, &StorageConfig::default())
            .await
            .expect_err("the directory does not exist");
        let msg = e.to_string();
        assert!(started.elapsed() < Duration::from_secs(5), "{msg}");
        assert!(msg.contains("no/such/dir/fd.db"), "{msg}");
        assert_eq!(msg.matches("no/such/dir").count(), 1, "{msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
    }

    #[tokio::test]
    async fn sqlite_file_is_created_in_wal_mode_and_migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/fd.db", dir.path().display());
        let cfg = StorageConfig::default();
        let first = migrate(&url, &cfg).await.unwrap();
        assert_eq!(first.backend, Backend::Sqlite);
        assert_eq!(first.applied.len(), SQLITE_MIGRATIONS.iter().count());
        assert!(dir.path().join("fd.db").exists());
        let second = migrate(&url, &cfg).await.unwrap();
        assert!(second.applied.is_empty());
        assert_eq!(second.already, first.applied.len());
        let store = Store::connect(&url, &cfg).await.unwrap();
        let Pool::Sqlite(p) = &store.pool else {
            panic!("expected sqlite")
        };
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(p)
            .await
            .unwrap();
        assert_eq!(mode.to_lowercase(), "wal");
    }
}
