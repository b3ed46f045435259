//! The embedded database: one SQLite file (rusqlite, bundled), one connection behind a mutex.
//! Every statement is short (an indexed lookup or a few rows written) and the file is in WAL mode,
//! so holding the lock never waits on training.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use super::super::sql::{Dialect, Row, Sql, Value, sqlite_placeholders};
use super::super::{Result, StoreError};

pub(crate) struct Sqlite {
    conn: Mutex<Connection>,
}

impl Sqlite {
    /// Opens (creating if needed) the database file at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written: keep serving.
        crate::blocking::lock(&self.conn)
    }

    /// Runs `f` on the connection, outside a transaction.
    pub(crate) fn read<T>(&self, mut f: impl FnMut(&mut dyn Sql) -> Result<T>) -> Result<T> {
        let conn = self.lock();
        f(&mut Session(&conn))
    }

    /// Runs `f` in one write transaction, committed if `f` succeeds.
    pub(crate) fn transaction<T>(&self, mut f: impl FnMut(&mut dyn Sql) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        // Immediate: the write lock is taken at BEGIN, so a check and the write it allows are
        // one step for any other process on the file too.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&mut Session(&tx))?;
        tx.commit()?;
        Ok(value)
    }
}

/// The connection (or a transaction, through `Deref`) as [`Sql`].
struct Session<'a>(&'a Connection);

impl Sql for Session<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64> {
        let mut stmt = self.0.prepare_cached(&sqlite_placeholders(sql))?;
        Ok(stmt.execute(rusqlite::params_from_iter(args))? as u64)
    }

    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
        let mut stmt = self.0.prepare_cached(&sqlite_placeholders(sql))?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..columns).map(|i| value(row.get_ref(i)?)).collect::<Result<_>>()?;
            out.push(Row(values));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.0.execute_batch(sql)?)
    }
}

fn value(v: ValueRef<'_>) -> Result<Value> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(|_| StoreError::Corrupt("text that is not UTF-8".into()))?
                .to_string(),
        ),
        ValueRef::Blob(_) => return Err(StoreError::Corrupt("a blob where kiln stores none".into())),
    })
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(r) => ValueRef::Real(*r),
            Value::Text(t) => ValueRef::Text(t.as_bytes()),
        }))
    }
}
