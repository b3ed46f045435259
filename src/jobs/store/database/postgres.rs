//! A PostgreSQL server, which several kiln replicas share: a pool of connections (r2d2, which
//! replaces one the server dropped, as after a restart), each with its prepared statements.
//!
//! The `postgres` client is synchronous, like the rest of the store, but it drives its socket with
//! a small runtime of its own, which may not start inside another. The store is called from
//! training threads (no runtime), from blocking tasks, and from async handlers on the server's
//! multi-threaded runtime; [`off_the_runtime`] steps out of the latter with `block_in_place`, so
//! a handler waiting on the database holds its thread as it held it waiting on SQLite's file.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type};
use postgres::{GenericClient, NoTls, Statement};

use super::super::sql::{Dialect, Row, Sql, Value};
use super::super::{Result, StoreError};

/// The most connections one replica holds.
const POOL_SIZE: u32 = 8;
/// How long a statement waits for a free connection, or a new one, before failing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a statement keeps trying while the server cannot be reached.
const RETRY_FOR: Duration = Duration::from_secs(60);

pub(crate) struct Postgres {
    /// Taken only when dropped (see `Drop`).
    pool: Option<r2d2::Pool<Manager>>,
}

impl Postgres {
    /// Connects to the server at `url`; fails if it cannot within [`CONNECT_TIMEOUT`].
    pub(crate) fn connect(url: &str) -> Result<Self> {
        let mut config: postgres::Config = url.parse()?;
        config.connect_timeout(CONNECT_TIMEOUT).application_name("kiln");
        let pool = off_the_runtime(|| {
            r2d2::Pool::builder()
                .max_size(POOL_SIZE)
                .min_idle(Some(1))
                .connection_timeout(CONNECT_TIMEOUT)
                .error_handler(Box::new(r2d2::LoggingErrorHandler))
                .build(Manager { config })
        })?;
        Ok(Self { pool: Some(pool) })
    }

    fn pool(&self) -> &r2d2::Pool<Manager> {
        self.pool.as_ref().expect("the pool is taken only by drop")
    }

    /// Runs `f` on a connection of the pool, outside a transaction. `f` may run again if the
    /// server could not be reached, so what it writes must be idempotent (an update to a value,
    /// an insert that ignores a duplicate, a delete).
    pub(crate) fn read<T: Send>(&self, mut f: impl FnMut(&mut dyn Sql) -> Result<T> + Send) -> Result<T> {
        off_the_runtime(|| {
            self.retrying(|conn| {
                let Connection { client, statements } = conn;
                f(&mut Session { client, statements })
            })
        })
    }

    /// Runs `f` in one transaction, committed if `f` succeeds. A transaction cut off before its
    /// commit (the server restarted, the network dropped) runs again, whole. One cut off during
    /// its commit may have committed: once the connection is dropped, its server process is
    /// ended and the transaction's fate read by its id ([`Postgres::settle`]); it runs again only
    /// if it did not commit, so nothing is written twice.
    pub(crate) fn transaction<T: Send>(
        &self,
        mut f: impl FnMut(&mut dyn Sql) -> Result<T> + Send,
    ) -> Result<T> {
        off_the_runtime(|| {
            loop {
                match self.retrying(|conn| attempt(conn, &mut f))? {
                    Attempt::Committed(value) => return Ok(value),
                    Attempt::Unknown { value, transaction, backend } => {
                        if self.settle(transaction, backend)? {
                            return Ok(value);
                        }
                        tracing::warn!(
                            transaction,
                            "a transaction cut off in its commit did not commit: running it again"
                        );
                    }
                }
            }
        })
    }

    /// Whether transaction `transaction`, whose commit was cut off, committed. Its server process
    /// `backend` is ended first (it may still be alive, behind a network cut), then its status
    /// read until it is final.
    fn settle(&self, transaction: i64, backend: i32) -> Result<bool> {
        let deadline = Instant::now() + RETRY_FOR;
        self.retrying(|conn| {
            // Only this role's own process, if it is still there (after a restart the id may be
            // another's).
            conn.client.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND usename = current_user",
                &[&backend],
            )?;
            loop {
                let status: Option<String> =
                    conn.client.query_one("SELECT txid_status($1)", &[&transaction])?.get(0);
                match status.as_deref() {
                    Some("committed") => return Ok(true),
                    Some("aborted") => return Ok(false),
                    Some("in progress") if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    other => {
                        return Err(StoreError::Corrupt(format!(
                            "the fate of transaction {transaction}, cut off in its commit, is unknown ({other:?})"
                        )));
                    }
                }
            }
        })
    }

    /// Runs `attempt` on a connection of the pool, again while the server cannot be reached, for
    /// up to [`RETRY_FOR`]: a restart or a failover of the server stalls the store, it does not
    /// fail the jobs that write to it.
    fn retrying<T>(&self, mut attempt: impl FnMut(&mut Connection) -> Result<T>) -> Result<T> {
        let deadline = Instant::now() + RETRY_FOR;
        let mut wait = Duration::from_millis(100);
        loop {
            let result = self.pool().get().map_err(StoreError::from).and_then(|mut conn| attempt(&mut conn));
            match result {
                Err(e) if unreachable(&e) && Instant::now() + wait < deadline => {
                    tracing::warn!(error = %e, retry_in = ?wait, "the database cannot be reached; trying again");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                result => return result,
            }
        }
    }
}

/// How one run of a transaction ended.
enum Attempt<T> {
    Committed(T),
    /// Cut off in its commit: it may have committed.
    Unknown {
        value: T,
        transaction: i64,
        backend: i32,
    },
}

/// Runs `f` in a transaction on `conn`, noting the transaction's id and server process first.
fn attempt<T>(conn: &mut Connection, f: &mut impl FnMut(&mut dyn Sql) -> Result<T>) -> Result<Attempt<T>> {
    let Connection { client, statements } = conn;
    let mut tx = client.transaction()?;
    let mut session = Session { client: &mut tx, statements };
    let ids = session.query_one("SELECT txid_current(), CAST(pg_backend_pid() AS BIGINT)", &[])?;
    let (transaction, backend) = (ids.get::<i64>(0)?, ids.get::<i64>(1)? as i32);
    let value = f(&mut session)?;
    match tx.commit() {
        Ok(()) => Ok(Attempt::Committed(value)),
        Err(e) if lost(&e) => Ok(Attempt::Unknown { value, transaction, backend }),
        Err(e) => Err(e.into()),
    }
}

/// Whether `e` says the server could not be reached, rather than refused a statement.
fn unreachable(e: &StoreError) -> bool {
    match e {
        StoreError::Pool(_) => true,
        StoreError::Postgres(e) => lost(e),
        _ => false,
    }
}

/// Whether the connection `e` came on is gone: closed, cut by the network, or ended by the
/// server as it shut down.
fn lost(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    let shutdown = [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW];
    e.is_closed()
        || e.code().is_some_and(|code| shutdown.contains(code))
        || std::error::Error::source(e).is_some_and(|source| source.is::<std::io::Error>())
}

impl Drop for Postgres {
    /// Each client says goodbye to the server on its own runtime as it is dropped: off the
    /// caller's, as every other use of them.
    fn drop(&mut self) {
        let pool = self.pool.take();
        off_the_runtime(move || drop(pool));
    }
}

/// Runs `f`, which may block on the `postgres` client's own runtime, where that is allowed: at
/// once outside any runtime, through `block_in_place` on a multi-threaded one, and on a thread of
/// its own on a current-thread one (a test's).
fn off_the_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Err(_) => f(),
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        Ok(_) => {
            std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }
    }
}

/// How long the server lets one of kiln's sessions sit idle inside a transaction before it ends
/// the session (see [`Manager::connect`]).
const IDLE_IN_TRANSACTION_MS: u64 = 2000;

/// A pooled connection and the statements prepared on it, by their SQL.
struct Connection {
    client: postgres::Client,
    statements: HashMap<String, Statement>,
}

struct Manager {
    config: postgres::Config,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<Connection, postgres::Error> {
        let mut client = self.config.connect(NoTls)?;
        // kiln's transactions never wait between statements: one open and idle is a replica that
        // was paused or cut off mid-write. The server ends it, releasing the job rows it locked,
        // so the other replicas can take that replica's jobs once its lease expires.
        client
            .batch_execute(&format!("SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}"))?;
        Ok(Connection { client, statements: HashMap::new() })
    }

    fn is_valid(&self, conn: &mut Connection) -> std::result::Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.client.is_closed()
    }
}

/// A connection or a transaction on it, as [`Sql`].
struct Session<'a, C: GenericClient> {
    client: &'a mut C,
    statements: &'a mut HashMap<String, Statement>,
}

impl<C: GenericClient> Session<'_, C> {
    /// `sql` prepared on this connection, once.
    fn prepared(&mut self, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

impl<C: GenericClient> Sql for Session<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64> {
        let statement = self.prepared(sql)?;
        Ok(self.client.execute(&statement, &bind(args))?)
    }

    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
        let statement = self.prepared(sql)?;
        self.client.query(&statement, &bind(args))?.iter().map(row).collect()
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.client.batch_execute(sql)?)
    }
}

fn bind(args: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// A result row as plain values, by each column's type.
fn row(row: &postgres::Row) -> Result<Row> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = match *ty {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(|v| Value::Int(v.into())),
            Type::INT2 => row.try_get::<_, Option<i16>>(i)?.map(|v| Value::Int(v.into())),
            Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(|v| Value::Int(v.into())),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Value::Real),
            Type::FLOAT4 => row.try_get::<_, Option<f32>>(i)?.map(|v| Value::Real(v.into())),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                row.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            _ => return Err(StoreError::Corrupt(format!("a column of type {ty}, which kiln does not read"))),
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

impl ToSql for Value {
    /// Each value in the binary format of the parameter's type, as the server inferred it; a
    /// value of another kind is an error, never bytes of the wrong shape.
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Int(v), &Type::INT8) => v.to_sql(ty, out),
            (Value::Int(v), &Type::INT4) => i32::try_from(*v)?.to_sql(ty, out),
            (Value::Int(v), &Type::INT2) => i16::try_from(*v)?.to_sql(ty, out),
            (Value::Int(v), &Type::FLOAT8) => (*v as f64).to_sql(ty, out),
            (Value::Int(v), &Type::BOOL) => (*v != 0).to_sql(ty, out),
            (Value::Real(v), &Type::FLOAT8) => v.to_sql(ty, out),
            (Value::Text(v), &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME) => {
                v.as_str().to_sql(ty, out)
            }
            (value, ty) => Err(format!("{value:?} bound to a parameter of type {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseUrl;
    use crate::jobs::store::testing;

    /// A transaction's id and server process, on a connection of its own.
    fn begin(client: &mut postgres::Client) -> (i64, i32) {
        client.batch_execute("BEGIN; CREATE TEMP TABLE t (x INT)").unwrap();
        let row = client.query_one("SELECT txid_current(), pg_backend_pid()", &[]).unwrap();
        (row.get(0), row.get(1))
    }

    #[test]
    fn a_commit_cut_off_is_settled_by_the_transactions_fate_and_a_live_one_is_ended_first() {
        let database = testing::postgres();
        let DatabaseUrl::Postgres(url) = &database.url else { unreachable!() };
        let store = Postgres::connect(url).unwrap();
        let connect = || postgres::Client::connect(url, NoTls).unwrap();

        let mut committed = connect();
        let (id, pid) = begin(&mut committed);
        committed.batch_execute("COMMIT").unwrap();
        assert!(store.settle(id, pid).unwrap(), "a committed transaction");

        let mut aborted = connect();
        let (id, pid) = begin(&mut aborted);
        aborted.batch_execute("ROLLBACK").unwrap();
        assert!(!store.settle(id, pid).unwrap(), "a rolled-back transaction");

        // Still open, as behind a network cut: its process is ended, so it can never commit.
        let mut open = connect();
        let (id, pid) = begin(&mut open);
        assert!(!store.settle(id, pid).unwrap(), "an open transaction is ended and did not commit");
        assert!(open.batch_execute("COMMIT").is_err(), "its connection is gone");
    }
}
