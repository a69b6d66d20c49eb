//! PostgreSQL as the metadata store: one connection, reconnected when lost,
//! and the SQLite migrations spelled in PostgreSQL's types.
//!
//! A lost database is a 503 with `Retry-After`, never a half-written change:
//! every write is one transaction, and the next request after PostgreSQL
//! comes back reconnects. Writes take one transaction-scoped advisory lock,
//! so they are serialized as SQLite's `BEGIN IMMEDIATE` serializes them,
//! across every registry process sharing the database; reads run on a
//! repeatable-read snapshot.

use std::cell::RefCell;
use std::sync::Mutex;
use std::time::Duration;

use postgres::{Client, Config, IsolationLevel, NoTls};

use super::sql::{Connection, PgTransaction, Transaction};
use super::{MIGRATIONS, check_schema, lock};
use crate::error::{Error, Result};

/// The advisory lock every write and every migration holds ("sluice").
const WRITE_LOCK: i64 = 0x736c_7569_6365;

pub struct Postgres {
    config: Config,
    /// `None` until the first use and after the connection was lost.
    client: Mutex<Option<Client>>,
}

impl Postgres {
    /// Connects to `url` and brings its schema up to date.
    pub fn connect(url: &str) -> Result<Postgres> {
        let mut config: Config = url
            .parse()
            .map_err(|err| Error::Internal(format!("--metadata is not a PostgreSQL URL: {err}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        // A peer that vanished without a reset (a node lost) fails the
        // query in seconds instead of holding the store's one connection.
        config.keepalives_idle(Duration::from_secs(10));
        config.tcp_user_timeout(Duration::from_secs(15));
        let postgres = Postgres {
            config,
            client: Mutex::new(None),
        };
        postgres.with_client(migrate)?;
        Ok(postgres)
    }

    pub fn read<T>(&self, read: impl FnOnce(&Connection<'_>) -> Result<T>) -> Result<T> {
        self.with_client(|client| {
            let transaction = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(lost)?;
            let engine = PgTransaction(RefCell::new(transaction));
            let value = read(&Connection::new(&engine))?;
            engine.0.into_inner().commit().map_err(lost)?;
            Ok(value)
        })
    }

    pub fn write<T>(&self, write: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.with_client(|client| {
            let mut transaction = client.transaction().map_err(lost)?;
            transaction
                .execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
                .map_err(lost)?;
            let engine = PgTransaction(RefCell::new(transaction));
            let value = write(&Transaction::new(&engine))?;
            engine.0.into_inner().commit().map_err(lost)?;
            Ok(value)
        })
    }

    /// Runs `work` on the connection, connecting first when there is none
    /// (or it was lost); a connection that failed under `work` is dropped
    /// so the next call starts afresh.
    fn with_client<T>(&self, work: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        let mut slot = lock(&self.client);
        if slot.as_ref().is_some_and(Client::is_closed) {
            *slot = None;
        }
        let client = match &mut *slot {
            Some(client) => client,
            none => none.insert(self.config.connect(NoTls).map_err(|err| {
                Error::Unavailable(format!(
                    "the metadata database cannot be reached ({err}): nothing was changed, retry"
                ))
            })?),
        };
        let result = work(client);
        if client.is_closed() {
            *slot = None;
        }
        result
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
    }
}
