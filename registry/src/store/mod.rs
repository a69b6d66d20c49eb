//! Metadata in SQLite (WAL, the default) or PostgreSQL (`--metadata
//! postgres://...`): models, versions, governance, deployments, rollouts,
//! training triggers, behavioural suites and their reports, tokens, and the audit
//! log, each in a module of its own, written once against [`sql`]'s surface
//! that both databases speak. [`pg`] reaches PostgreSQL (over TLS as the
//! URL's libpq parameters say: [`pg_tls`]) and migrates it with the same
//! steps as SQLite's.
//!
//! Every write runs in one transaction, serialized with every other write,
//! that also appends its audit event, so a change and its record land
//! together or not at all. The connection sits behind a mutex and is used
//! from blocking threads only: the control plane's writes are few and small,
//! the data plane never calls here.

pub mod aliases;
pub mod deployments;
pub mod events;
pub mod governance;
pub mod models;
mod pg;
mod pg_tls;
pub mod rollouts;
pub mod sql;
pub mod suites;
pub mod tokens;
pub mod triggers;
pub mod versions;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::TransactionBehavior;
use sql::{Connection, Transaction};

use crate::error::{Error, Result};

/// Each step brings the schema from the previous version to its own;
/// `migrate` runs the ones a file lacks, in order, each in a transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, SCHEMA_V1),
    (2, SCHEMA_V2),
    (3, SCHEMA_V3),
    (4, SCHEMA_V4),
    (5, SCHEMA_V5),
    (6, SCHEMA_V6),
];

const SCHEMA_V1: &str = "
CREATE TABLE models (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    tags        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE TABLE artifacts (
    sha256     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    signature  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE versions (
    model      TEXT NOT NULL REFERENCES models(name),
    version    INTEGER NOT NULL,
    sha256     TEXT NOT NULL REFERENCES artifacts(sha256),
    stage      TEXT NOT NULL,
    lineage    TEXT NOT NULL,
    source_uri TEXT,
    author     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TABLE documents (
    model      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (model, version, name),
    FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
CREATE TABLE aliases (
    model      TEXT NOT NULL,
    alias      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (model, alias),
    FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
CREATE TABLE transitions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    model        TEXT NOT NULL,
    version      INTEGER NOT NULL,
    from_stage   TEXT NOT NULL,
    to_stage     TEXT NOT NULL,
    status       TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    comment      TEXT NOT NULL,
    FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
CREATE TABLE reviews (
    transition_id INTEGER NOT NULL REFERENCES transitions(id),
    actor         TEXT NOT NULL,
    decision      TEXT NOT NULL,
    approval      TEXT,
    comment       TEXT NOT NULL,
    at            TEXT NOT NULL,
    PRIMARY KEY (transition_id, actor)
);
CREATE TABLE deployments (
    model      TEXT PRIMARY KEY REFERENCES models(name),
    revision   INTEGER NOT NULL,
    spec       TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('deployments_revision', 0);
CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    before  TEXT,
    after   TEXT,
    reason  TEXT
);
";

/// Progressive rollouts: the latest of each model, its state as JSON.
const SCHEMA_V2: &str = "
CREATE TABLE rollouts (
    model TEXT PRIMARY KEY REFERENCES models(name),
    state TEXT NOT NULL
);
";

/// Training triggers: each model's policy, and every run it fired.
const SCHEMA_V3: &str = "
CREATE TABLE trigger_policies (
    model TEXT PRIMARY KEY REFERENCES models(name),
    policy TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE TABLE trigger_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL REFERENCES models(name),
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX trigger_runs_by_model ON trigger_runs (model, id);
";

/// Behavioural suites: every revision of each model's suite, and the
/// report of each version's latest run of each revision.
const SCHEMA_V4: &str = "
CREATE TABLE suites (
    model      TEXT NOT NULL REFERENCES models(name),
    revision   INTEGER NOT NULL,
    suite      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (model, revision)
);
CREATE TABLE suite_reports (
    model          TEXT NOT NULL,
    version        INTEGER NOT NULL,
    suite_revision INTEGER NOT NULL,
    passed         INTEGER NOT NULL,
    report         TEXT NOT NULL,
    ran_at         TEXT NOT NULL,
    PRIMARY KEY (model, version, suite_revision),
    FOREIGN KEY (model, version) REFERENCES versions(model, version),
    FOREIGN KEY (model, suite_revision) REFERENCES suites(model, revision)
);
";

/// Bearer tokens, by hash: made and revoked live, or read from the tokens
/// file at start (`source`).
const SCHEMA_V5: &str = "
CREATE TABLE tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256     TEXT NOT NULL UNIQUE,
    actor      TEXT NOT NULL,
    role       TEXT NOT NULL,
    source     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    revoked_by TEXT
);
";

/// A version moved out of its stage stays deployable until
/// `rollback_until`; an event names the policy rule that allowed it.
const SCHEMA_V6: &str = "
ALTER TABLE versions ADD COLUMN rollback_until TEXT;
ALTER TABLE events ADD COLUMN rule TEXT;
";

/// The metadata database. Cheap to clone: one connection, shared.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

enum Backend {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(Box<pg::Postgres>),
}

impl Store {
    /// The store `--metadata` names: a `postgres://` URL, or else the
    /// SQLite file `default_path` (or the path after `sqlite://`). Blocking:
    /// PostgreSQL is reached (its registry lock waited for up to
    /// `lock_wait`) and both are migrated here.
    pub fn connect(metadata_opt: Option<&str>, default_path: &Path, lock_wait: Duration) -> Result<Store> {
        match metadata_opt {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(Store {
                backend: Arc::new(Backend::Postgres(Box::new(pg::Postgres::connect(
                    url, lock_wait,
                )?))),
            }),
            Some(url) => match url.strip_prefix("sqlite://") {
                Some(path) => Store::open(Path::new(path)),
                // Not the URL itself: it may hold a password.
                None => Err(Error::Internal(
                    "--metadata must start with postgres://, postgresql:// or sqlite://".into(),
                )),
            },
            None => Store::open(default_path),
        }
    }

    /// Opens (or creates) the SQLite file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let mut connection = rusqlite::Connection::open(path)
            .map_err(|err| Error::Internal(format!("cannot open {}: {err}", path.display())))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut connection)?;
        Ok(Store {
            backend: Arc::new(Backend::Sqlite(Mutex::new(connection))),
        })
    }

    /// Which database this is, for logs and the readiness answer.
    pub fn kind(&self) -> &'static str {
        match &*self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Runs `read` on one consistent snapshot. Blocking.
    pub fn read<T>(&self, read: impl FnOnce(&Connection<'_>) -> Result<T>) -> Result<T> {
        match &*self.backend {
            Backend::Sqlite(connection) => {
                let connection = lock(connection);
                read(&Connection::new(&*connection))
            }
            Backend::Postgres(postgres) => postgres.read(read),
        }
    }

    /// Runs `write` in one transaction, serialized with every other write
    /// (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's transaction-scoped advisory
    /// lock), committed only when it returns `Ok`. Blocking.
    pub fn write<T>(&self, write: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        match &*self.backend {
            Backend::Sqlite(connection) => {
                let mut connection = lock(connection);
                let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let value = write(&Transaction::new(&*transaction))?;
                transaction.commit()?;
                Ok(value)
            }
            Backend::Postgres(postgres) => postgres.write(write),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock rolled its transaction back (the
    // transaction's drop), so the connection is still consistent.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn migrate(connection: &mut rusqlite::Connection) -> Result<()> {
    let current: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    check_schema(current)?;
    for (version, step) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(step)?;
        transaction.pragma_update(None, "user_version", version)?;
        transaction.commit()?;
    }
    Ok(())
}

/// A database migrated by a newer build is refused, never written.
fn check_schema(current: i64) -> Result<()> {
    let latest = MIGRATIONS.last().map_or(0, |(version, _)| *version);
    if current > latest {
        return Err(Error::Internal(format!(
            "the metadata database has schema {current}, newer than this build's {latest}"
        )));
    }
    Ok(())
}

/// Now, as the RFC 3339 UTC string every record carries.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// A stored JSON column back into its type.
pub fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    Ok(serde_json::from_str(text)?)
}

pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    Ok(serde_json::to_string(value)?)
}

/// Both databases store integers signed; versions and ids are never negative.
pub fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

pub fn to_i64(value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::bad_request(format!("{value} is out of range")))
}

#[cfg(test)]
pub(crate) fn in_memory() -> Store {
    let mut connection = rusqlite::Connection::open_in_memory().unwrap();
    connection.pragma_update(None, "foreign_keys", "ON").unwrap();
    migrate(&mut connection).unwrap();
    Store {
        backend: Arc::new(Backend::Sqlite(Mutex::new(connection))),
    }
}
