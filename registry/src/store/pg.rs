//! PostgreSQL as the metadata store: one connection, reconnected when lost,
//! and the SQLite migrations spelled in PostgreSQL's types.
//!
//! A lost database is a 503 with `Retry-After`, never a half-written change:
//! every write is one transaction, and the first request after PostgreSQL
//! comes back reconnects. Writes take one transaction-scoped advisory lock,
//! so they are serialized as SQLite's `BEGIN IMMEDIATE` serializes them
//! (with the ad-hoc `psql` of an operator too); reads run on a
//! repeatable-read snapshot. One registry uses a database at a time: it
//! holds a session lock, and a second one waits for it at start (a minute,
//! then it exits saying why).

use std::cell::RefCell;
use std::sync::Mutex;
use std::time::Duration;

use postgres::config::SslMode;
use postgres::{Client, Config, IsolationLevel};

use super::pg_tls::{self, MakeRustls};
use super::sql::{Connection, PgTransaction, Transaction, describe};
use super::{MIGRATIONS, check_schema, lock};
use crate::error::{Error, Result};

/// The advisory lock every write and every migration holds ("sluice").
const WRITE_LOCK: i64 = 0x736c_7569_6365;

/// The session lock the one registry on a database holds ("sluice-r").
const REGISTRY_LOCK: i64 = 0x736c_7569_6365_2d72;

pub struct Postgres {
    config: Config,
    /// TLS as the URL's `sslmode` asks (see [`pg_tls`]).
    tls: MakeRustls,
    /// `None` until the first use and after the connection was lost.
    client: Mutex<Option<Client>>,
}

impl Postgres {
    /// Connects to `url`, takes the registry's lock on the database
    /// (waiting up to `lock_wait` for another registry to let go of it),
    /// and brings its schema up to date.
    pub fn connect(url: &str, lock_wait: Duration) -> Result<Postgres> {
        let (mut config, tls) = pg_tls::parse(url)
            .map_err(|err| Error::Internal(format!("--metadata is not a usable PostgreSQL URL: {err}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        // A database that vanished without a reset (a node lost) fails the
        // query in seconds instead of holding the store's one connection
        // (the server's side of the same is set in `connected`).
        config.keepalives_idle(Duration::from_secs(10));
        config.tcp_user_timeout(Duration::from_secs(15));
        if config.get_application_name().is_none() {
            config.application_name("sluice-registry");
        }
        let postgres = Postgres {
            config,
            tls,
            client: Mutex::new(None),
        };
        let mut slot = lock(&postgres.client);
        // At start, the registry this one replaces may still hold the
        // database until the server sees its connection go.
        migrate(connected(&mut slot, &postgres.config, &postgres.tls, lock_wait)?)?;
        drop(slot);
        Ok(postgres)
    }

    pub fn read<T>(&self, read: impl FnOnce(&Connection<'_>) -> Result<T>) -> Result<T> {
        self.run(Access::Read, |engine| read(&Connection::new(engine)))
    }

    pub fn write<T>(&self, write: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.run(Access::Write, |engine| write(&Transaction::new(engine)))
    }

    /// Runs `work` in one transaction. A connection found lost when the
    /// transaction begins (PostgreSQL restarted since the last request) is
    /// replaced once: nothing was sent yet, so the retry is safe. A
    /// connection lost later is dropped, so the next call starts afresh.
    fn run<T>(&self, access: Access, work: impl FnOnce(&PgTransaction<'_>) -> Result<T>) -> Result<T> {
        let mut slot = lock(&self.client);
        let mut work = Some(work);
        let mut retried = false;
        let result = loop {
            let client = connected(&mut slot, &self.config, &self.tls, Duration::from_secs(5))?;
            let err = match begin(client, access) {
                Ok(transaction) => break finish(transaction, access, work.take()),
                Err(err) => err,
            };
            if client.is_closed() && !retried {
                tracing::info!(error = %err, "the metadata database connection was lost: reconnecting");
                retried = true;
                *slot = None;
                continue;
            }
            break Err(lost(err));
        };
        if slot.as_ref().is_some_and(Client::is_closed) {
            *slot = None;
        }
        result
    }
}

/// Runs `work` in `transaction` and commits what it did.
fn finish<T>(
    transaction: postgres::Transaction<'_>,
    access: Access,
    work_opt: Option<impl FnOnce(&PgTransaction<'_>) -> Result<T>>,
) -> Result<T> {
    let Some(work) = work_opt else {
        return Err(Error::Internal("a store transaction ran twice".into()));
    };
    let engine = PgTransaction(RefCell::new(transaction));
    let value = work(&engine)?;
    match engine.0.into_inner().commit() {
        Ok(()) => Ok(value),
        // The COMMIT may have reached the server before the connection
        // went: say so, rather than "nothing was changed".
        Err(err) if err.code().is_none() && access == Access::Write => Err(Error::Unavailable(format!(
            "the metadata database connection was lost while committing ({}): \
             the change may or may not have been made; read it back before retrying",
            describe(&err)
        ))),
        Err(err) => Err(lost(err)),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

/// The connection, made when there is none or it was lost; the registry's
/// lock taken on each new one.
fn connected<'c>(
    slot: &'c mut Option<Client>,
    config: &Config,
    tls: &MakeRustls,
    lock_wait: Duration,
) -> Result<&'c mut Client> {
    if slot.as_ref().is_some_and(Client::is_closed) {
        *slot = None;
    }
    if slot.is_none() {
        let unreachable = |err: postgres::Error| {
            Error::Unavailable(format!(
                "the metadata database cannot be reached ({}): nothing was changed, retry",
                describe(&err)
            ))
        };
        let mut client = match config.connect(tls.clone()) {
            Ok(client) => client,
            // libpq's `prefer`: a handshake that fails is retried in plain
            // text (the driver itself would give up).
            Err(err) if config.get_ssl_mode() == SslMode::Prefer && pg_tls::handshake_failed(&err) => {
                tracing::warn!(
                    error = %describe(&err),
                    "TLS to the metadata database failed; sslmode=prefer: connecting in plain text"
                );
                let mut plain = config.clone();
                plain.ssl_mode(SslMode::Disable);
                plain.connect(tls.clone()).map_err(unreachable)?
            }
            Err(err) => return Err(unreachable(err)),
        };
        // Set here rather than in the URL's `options`, which a pooler such
        // as pgbouncer refuses (it must pool by session: the lock below is
        // the session's). The keepalives are the server's side of the
        // client's: a registry whose node vanished lets go of its locks
        // within a minute, not TCP's two hours.
        client
            .batch_execute(
                "SET idle_in_transaction_session_timeout = 30000; \
                 SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3",
            )
            .map_err(unreachable)?;
        // One registry per database: the rollout controller, the monitor
        // and the watch feed live in the registry's memory, and two would
        // judge rollouts on split statistics and dispatch every run twice.
        // Waited for, not tried: the holder may be this process's previous
        // connection (or a replaced registry's) that the server has not yet
        // seen go.
        let wait_ms = lock_wait.as_millis();
        let locked = client.batch_execute(&format!(
            "SET lock_timeout = {wait_ms}; SELECT pg_advisory_lock({REGISTRY_LOCK}); SET lock_timeout = 0; \
             SET statement_timeout = 30000"
        ));
        if let Err(err) = locked {
            return Err(match err.code() {
                Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) => Error::Unavailable(format!(
                    "another registry holds this metadata database (still, after {wait_ms} ms): run one \
                     registry per database; pg_stat_activity shows it as application_name 'sluice-registry'"
                )),
                _ => unreachable(err),
            });
        }
        *slot = Some(client);
    }
    slot.as_mut()
        .ok_or_else(|| Error::Internal("the metadata connection vanished".into()))
}

fn begin(client: &mut Client, access: Access) -> Result<postgres::Transaction<'_>, postgres::Error> {
    match access {
        Access::Read => client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start(),
        Access::Write => {
            let mut transaction = client.transaction()?;
            // A writer that holds the lock too long (a registry being
            // stopped mid-write) gets a 503 here, not a hung request.
            transaction.batch_execute("SET LOCAL lock_timeout = '5s'")?;
            transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
            Ok(transaction)
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The client owns a runtime, which may not be dropped on an async
        // thread (where the registry's state is usually dropped).
        if let Some(client) = lock(&self.client).take() {
            std::thread::spawn(move || drop(client));
        }
    }
}

/// Errors at the transaction's edges (begin, lock, commit) are the
/// connection's, mapped as every statement's are.
fn lost(err: postgres::Error) -> Error {
    super::sql::SqlError::from(err).into()
}

/// Brings the schema up to date, each step in its transaction, under the
/// write lock so two registries starting at once migrate once.
fn migrate(client: &mut Client) -> Result<()> {
    let mut transaction = client.transaction().map_err(lost)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .map_err(lost)?;
    transaction
        .batch_execute("CREATE TABLE IF NOT EXISTS sluice_schema (version BIGINT NOT NULL)")
        .map_err(lost)?;
    let current: i64 = transaction
        .query_opt("SELECT version FROM sluice_schema", &[])
        .map_err(lost)?
        .map_or(0, |row| row.get(0));
    check_schema(current)?;
    for (version, step) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        transaction.batch_execute(&postgres_types(step)).map_err(lost)?;
        transaction
            .execute("DELETE FROM sluice_schema", &[])
            .map_err(lost)?;
        transaction
            .execute("INSERT INTO sluice_schema (version) VALUES ($1)", &[version])
            .map_err(lost)?;
    }
    transaction.commit().map_err(lost)?;
    Ok(())
}

/// A SQLite migration in PostgreSQL's types: integers are 64-bit in both,
/// and an autoincrement key is an identity column.
pub fn postgres_types(step: &str) -> String {
    step.replace(
        "INTEGER PRIMARY KEY AUTOINCREMENT",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    )
    .replace(" INTEGER", " BIGINT")
    // Byte order, as SQLite sorts: lists and aliases read the same on both.
    .replace(" TEXT", " TEXT COLLATE \"C\"")
    .replace(" REAL", " DOUBLE PRECISION")
    .replace(" BLOB", " BYTEA")
}

#[cfg(test)]
mod tests {
    use super::postgres_types;

    #[test]
    fn sqlite_types_become_postgres_types() {
        assert_eq!(
            postgres_types(
                "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, x REAL)"
            ),
            "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, x DOUBLE PRECISION)"
        );
        assert_eq!(
            postgres_types("CREATE TABLE t (name TEXT PRIMARY KEY)"),
            "CREATE TABLE t (name TEXT COLLATE \"C\" PRIMARY KEY)"
        );
    }
}
