//! One SQL surface over the two metadata databases: SQLite (the default, a
//! file in the data directory) and PostgreSQL (`--metadata postgres://...`,
//! when the registry outgrows one machine).
//!
//! The store modules write each statement once, in the dialect both share
//! (`?N` parameters, `ON CONFLICT ... DO UPDATE`, `RETURNING`), against
//! [`Connection`] and [`Transaction`]. This module binds parameters and reads
//! rows as [`Value`]s, so neither database's types leak into them; for
//! PostgreSQL it renumbers parameters `$N`. The few expressions the two spell
//! differently ask [`Connection::dialect`].

use std::cell::RefCell;
use std::ops::Deref;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::error::Error;

/// A parameter or a column, in the types both databases store.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("the query returned no rows")]
    NoRows,
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    #[error("column {index}: {message}")]
    Column { index: usize, message: String },
    /// Text with a NUL character, which PostgreSQL's `text` cannot hold:
    /// refused on both databases, so they accept the same writes.
    #[error("text may not contain the NUL character (\\u0000)")]
    Nul,
}

pub type SqlResult<T> = std::result::Result<T, SqlError>;

/// A PostgreSQL error with its causes: the driver's own text is only the
/// kind ("db error", "error connecting to server"); what went wrong (the
/// server's message, "connection refused", the certificate) is in its
/// sources.
pub fn describe(err: &postgres::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Which database a connection speaks, for the expressions they spell differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A parameter: what the store binds.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}

impl ToValue for u32 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// `params![a, b]`: the parameters of one statement, `?1` and `?2`.
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::store::sql::ToValue]
    };
    ($($param:expr),+ $(,)?) => {
        &[$(&$param as &dyn $crate::store::sql::ToValue),+] as &[&dyn $crate::store::sql::ToValue]
    };
}
pub(crate) use params;

/// A statement's parameters: `params![a, b]`, or an array of one type.
pub trait Params {
    fn values(self) -> Vec<Value>;
}

impl Params for &[&dyn ToValue] {
    fn values(self) -> Vec<Value> {
        self.iter().map(|param| param.to_value()).collect()
    }
}

impl<T: ToValue, const N: usize> Params for [T; N] {
    fn values(self) -> Vec<Value> {
        self.iter().map(ToValue::to_value).collect()
    }
}

/// A column read back into the store's types.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Result<Self, String>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<i64, String> {
        match value {
            Value::Int(int) => Ok(*int),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<bool, String> {
        i64::from_value(value).map(|int| int != 0)
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<f64, String> {
        match value {
            Value::Real(real) => Ok(*real),
            // SQLite hands back a whole REAL as an integer.
            Value::Int(int) => Ok(*int as f64),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<String, String> {
        match value {
            Value::Text(text) => Ok(text.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Option<T>, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A column's position (as rusqlite's `RowIndex`, so `row.get(0)` reads well).
pub trait RowIndex {
    fn index(self) -> usize;
}

impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One row of a result, read whole.
#[derive(Debug)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    pub fn get<I: RowIndex, T: FromValue>(&self, index: I) -> SqlResult<T> {
        let index = index.index();
        let value = self.values.get(index).ok_or_else(|| SqlError::Column {
            index,
            message: format!("the row has {} columns", self.values.len()),
        })?;
        T::from_value(value).map_err(|message| SqlError::Column { index, message })
    }
}

/// `query_row(...).optional()`: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> SqlResult<Option<T>>;
}

impl<T> OptionalExtension<T> for SqlResult<T> {
    fn optional(self) -> SqlResult<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(SqlError::NoRows) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// What a database must do for the store.
pub(super) trait Engine {
    fn rows(&self, sql: &str, params: Vec<Value>) -> SqlResult<Vec<Row>>;
    fn execute(&self, sql: &str, params: Vec<Value>) -> SqlResult<usize>;
    fn dialect(&self) -> Dialect;
}

/// Reads: the store's view of one database session.
pub struct Connection<'a> {
    engine: &'a dyn Engine,
}

impl<'a> Connection<'a> {
    pub(super) fn new(engine: &'a dyn Engine) -> Connection<'a> {
        Connection { engine }
    }

    pub fn dialect(&self) -> Dialect {
        self.engine.dialect()
    }

    /// The first row, read by `read`; [`SqlError::NoRows`] when there is none.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        read: impl FnOnce(&Row) -> SqlResult<T>,
    ) -> SqlResult<T> {
        let rows = self.engine.rows(sql, checked(params)?)?;
        read(rows.first().ok_or(SqlError::NoRows)?)
    }

    /// Runs a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> SqlResult<usize> {
        self.engine.execute(sql, checked(params)?)
    }

    pub fn prepare(&self, sql: &str) -> SqlResult<Statement<'_, 'a>> {
        Ok(Statement {
            connection: self,
            sql: sql.to_string(),
        })
    }
}

fn checked(params: impl Params) -> SqlResult<Vec<Value>> {
    let values = params.values();
    let nul = values
        .iter()
        .any(|value| matches!(value, Value::Text(text) if text.contains('\0')));
    if nul { Err(SqlError::Nul) } else { Ok(values) }
}

/// A statement run for many rows.
pub struct Statement<'c, 'a> {
    connection: &'c Connection<'a>,
    sql: String,
}

impl Statement<'_, '_> {
    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        read: impl FnMut(&Row) -> SqlResult<T>,
    ) -> SqlResult<std::vec::IntoIter<SqlResult<T>>> {
        let rows = self.connection.engine.rows(&self.sql, checked(params)?)?;
        Ok(rows.iter().map(read).collect::<Vec<_>>().into_iter())
    }
}

/// Writes: a connection inside the one transaction of a change.
pub struct Transaction<'a> {
    connection: Connection<'a>,
}

impl<'a> Transaction<'a> {
    pub(super) fn new(engine: &'a dyn Engine) -> Transaction<'a> {
        Transaction {
            connection: Connection::new(engine),
        }
    }
}

impl<'a> Deref for Transaction<'a> {
    type Target = Connection<'a>;

    fn deref(&self) -> &Connection<'a> {
        &self.connection
    }
}

// SQLite.

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(int) => ValueRef::Integer(*int),
            Value::Real(real) => ValueRef::Real(*real),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Blob(blob) => ValueRef::Blob(blob),
        }))
    }
}

impl Engine for rusqlite::Connection {
    fn rows(&self, sql: &str, params: Vec<Value>) -> SqlResult<Vec<Row>> {
        use rusqlite::types::ValueRef;
        let mut statement = self.prepare_cached(sql)?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        let mut read = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for index in 0..columns {
                values.push(match row.get_ref(index)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(int) => Value::Int(int),
                    ValueRef::Real(real) => Value::Real(real),
                    ValueRef::Text(text) => {
                        Value::Text(String::from_utf8(text.to_vec()).map_err(|err| SqlError::Column {
                            index,
                            message: err.to_string(),
                        })?)
                    }
                    ValueRef::Blob(blob) => Value::Blob(blob.to_vec()),
                });
            }
            read.push(Row { values });
        }
        Ok(read)
    }

    fn execute(&self, sql: &str, params: Vec<Value>) -> SqlResult<usize> {
        Ok(self
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

// PostgreSQL.

/// A PostgreSQL transaction as an [`Engine`]: the client needs `&mut`, the
/// store's functions share `&`, and one thread uses it at a time.
pub(super) struct PgTransaction<'t>(pub RefCell<postgres::Transaction<'t>>);

impl Engine for PgTransaction<'_> {
    fn rows(&self, sql: &str, params: Vec<Value>) -> SqlResult<Vec<Row>> {
        let bound: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|value| value as &(dyn ToSql + Sync)).collect();
        let rows = self.0.borrow_mut().query(numbered(sql).as_str(), &bound)?;
        rows.iter().map(read_pg_row).collect()
    }

    fn execute(&self, sql: &str, params: Vec<Value>) -> SqlResult<usize> {
        let bound: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|value| value as &(dyn ToSql + Sync)).collect();
        let changed = self.0.borrow_mut().execute(numbered(sql).as_str(), &bound)?;
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
}

/// `?1` (and a bare `?`) as PostgreSQL's `$1`, outside string literals.
pub fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut in_literal = false;
    let mut next_bare = 0;
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => {
                in_literal = !in_literal;
                out.push(ch);
            }
            '?' if !in_literal => {
                out.push('$');
                if chars.peek().is_some_and(char::is_ascii_digit) {
                    while let Some(digit) = chars.next_if(char::is_ascii_digit) {
                        out.push(digit);
                    }
                } else {
                    next_bare += 1;
                    out.push_str(&next_bare.to_string());
                }
            }
            _ => out.push(ch),
        }
    }
    out
}

fn read_pg_row(row: &postgres::Row) -> SqlResult<Row> {
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(index)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(index)?
                .map(|int| Value::Int(i64::from(int)))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(index)?
                .map(|int| Value::Int(i64::from(int)))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(index)?
                .map(|flag| Value::Int(i64::from(flag)))
        } else if *ty == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(index)?.map(Value::Real)
        } else if *ty == Type::FLOAT4 {
            row.try_get::<_, Option<f32>>(index)?
                .map(|real| Value::Real(f64::from(real)))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(index)?.map(Value::Blob)
        } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
            row.try_get::<_, Option<String>>(index)?.map(Value::Text)
        } else {
            return Err(SqlError::Column {
                index,
                message: format!("PostgreSQL type {ty} has no store type: cast it in the query"),
            });
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row { values })
}

impl ToSql for Value {
    /// Binds to whatever type PostgreSQL inferred for the parameter, as
    /// SQLite would: an integer to `bigint` or `integer`, text to `text`.
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(int) => {
                if *ty == Type::INT4 {
                    i32::try_from(*int)?.to_sql(ty, out)
                } else if *ty == Type::INT2 {
                    i16::try_from(*int)?.to_sql(ty, out)
                } else if *ty == Type::BOOL {
                    (*int != 0).to_sql(ty, out)
                } else if *ty == Type::FLOAT8 {
                    (*int as f64).to_sql(ty, out)
                } else if [Type::TEXT, Type::VARCHAR, Type::UNKNOWN].contains(ty) {
                    int.to_string().as_str().to_sql(ty, out)
                } else {
                    int.to_sql(ty, out)
                }
            }
            Value::Real(real) => {
                if *ty == Type::FLOAT4 {
                    (*real as f32).to_sql(ty, out)
                } else {
                    real.to_sql(ty, out)
                }
            }
            Value::Text(text) => text.as_str().to_sql(ty, out),
            Value::Blob(blob) => blob.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The crate's error for a failed statement: transient PostgreSQL failures
/// (the change was not made, retry) apart from bugs; `crate::error` maps it
/// to a status.
impl From<SqlError> for Error {
    fn from(err: SqlError) -> Error {
        match err {
            SqlError::Sqlite(err) => err.into(),
            SqlError::Postgres(err) => from_postgres(err),
            SqlError::Nul => Error::bad_request(err.to_string()),
            other => Error::Internal(format!("metadata store: {other}")),
        }
    }
}

/// PostgreSQL down, restarting, out of connections, or a transaction it
/// aborted to break a deadlock: the transaction rolled back whole, and the
/// same request can succeed in a moment. Anything else is a bug.
fn from_postgres(err: postgres::Error) -> Error {
    use postgres::error::SqlState;
    let transient = match err.code() {
        // No SQLSTATE: the connection (closed, refused, timed out), or a
        // bug of ours (a conversion, a parameter count).
        None => {
            err.is_closed()
                || std::error::Error::source(&err).is_some_and(|source| source.is::<std::io::Error>())
        }
        Some(code) => {
            [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::QUERY_CANCELED,
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::DISK_FULL,
            ]
            .contains(code)
                || code.code().starts_with("08")
        }
    };
    let text = describe(&err);
    if transient {
        // The whole story (the server's message, a host name) for the
        // operator's log; the client, whoever it is, gets its kind.
        tracing::warn!(error = %text, "the metadata database is unavailable");
        let kind = err
            .code()
            .map_or_else(|| err.to_string(), |code| format!("SQLSTATE {}", code.code()));
        Error::Unavailable(format!(
            "the metadata database is unavailable ({kind}): the change was not made, retry"
        ))
    } else {
        Error::Internal(format!("metadata store: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn parameters_are_renumbered_outside_literals() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $12"
        );
        assert_eq!(numbered("VALUES (?, ?)"), "VALUES ($1, $2)");
    }
}
