//! The few things kiln asks of a SQL database, the same for SQLite and PostgreSQL: run a
//! statement, read rows of plain values. The store's queries are written once against [`Sql`],
//! with PostgreSQL's `$1` placeholders (SQLite reads them as `?1`), and the handful of phrases the
//! two dialects spell differently (JSON fields, row locks) come from [`Dialect`].

use super::{Result, StoreError};

/// A value bound to a placeholder or read from a column. Integers are 64-bit everywhere (the
/// PostgreSQL schema uses `BIGINT`), reals are doubles, text is UTF-8.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(v.into())
    }
}

impl From<u64> for Value {
    /// Counts, sizes and steps: far below `i64::MAX` in practice; saturates rather than wraps.
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::from(v as u64)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl From<uuid::Uuid> for Value {
    /// Ids are stored as their hyphenated lowercase text.
    fn from(v: uuid::Uuid) -> Self {
        Value::Text(v.to_string())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// The values bound to a statement's `$1`, `$2`, …, in order.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::jobs::store::sql::Value::from($value)),*][..]
    };
}
pub(crate) use args;

/// A Rust value read from a column.
pub(crate) trait FromValue: Sized {
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }
}

impl FromValue for u64 {
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).and_then(|v| u64::try_from(v).ok())
    }
}

impl FromValue for u32 {
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).and_then(|v| u32::try_from(v).ok())
    }
}

impl FromValue for bool {
    /// SQLite has no booleans: 0 and 1, as PostgreSQL's are read.
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).map(|v| v != 0)
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Real(v) => Some(*v),
            // SQLite stores a whole REAL as an integer when it can.
            Value::Int(v) => Some(*v as f64),
            _ => None,
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(v) => Some(v.clone()),
            _ => None,
        }
    }
}

impl FromValue for uuid::Uuid {
    /// A job's or a data set's id, stored as text.
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(v) => uuid::Uuid::parse_str(v).ok(),
            _ => None,
        }
    }
}

impl FromValue for crate::jobs::JobStatus {
    /// A status, stored by its name.
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(v) => Self::parse(v),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One row of a result, its columns in the order the query named them.
#[derive(Debug)]
pub(crate) struct Row(pub(crate) Vec<Value>);

impl Row {
    /// Column `index` as a `T`; a column of another type is a corrupt database.
    pub(crate) fn get<T: FromValue>(&self, index: usize) -> Result<T> {
        let value = self.0.get(index).unwrap_or(&Value::Null);
        T::from_value(value).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "column {index} holds {value:?}, not a {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// The SQL dialect of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// An expression reading the integer field `key` of the JSON text in `column`.
    pub(crate) fn json_int(self, column: &str, key: &str) -> String {
        match self {
            Dialect::Sqlite => format!("({column} ->> '{key}')"),
            Dialect::Postgres => format!("(({column})::jsonb ->> '{key}')::bigint"),
        }
    }

    /// An expression for the database server's clock, in milliseconds since the Unix epoch:
    /// replicas on several machines compare heartbeats on the one clock they share.
    pub(crate) fn now_ms(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// The clause that makes a `SELECT` lock the rows it reads until the transaction ends:
    /// against writers (`share`) or against everyone (`!share`). SQLite locks the whole database
    /// for a write transaction instead, so it needs none.
    pub(crate) fn lock_rows(self, share: bool) -> &'static str {
        match (self, share) {
            (Dialect::Sqlite, _) => "",
            (Dialect::Postgres, true) => " FOR SHARE",
            (Dialect::Postgres, false) => " FOR UPDATE",
        }
    }

    /// [`Dialect::lock_rows`] against everyone, passing over rows another transaction holds: the
    /// work-queue idiom, so replicas claiming at once take different jobs instead of waiting on
    /// one another.
    pub(crate) fn lock_free_rows(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// A connection, or a transaction on one. Statements use `$1`-style placeholders.
pub(crate) trait Sql {
    fn dialect(&self) -> Dialect;

    /// Runs a statement; returns how many rows it changed.
    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64>;

    /// Runs a query; returns all its rows.
    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>>;

    /// Runs statements separated by `;`, without arguments (a schema).
    fn batch(&mut self, sql: &str) -> Result<()>;

    /// The first row of a query, if any.
    fn query_opt(&mut self, sql: &str, args: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The first row of a query that always returns one (an aggregate, a `RETURNING`).
    fn query_one(&mut self, sql: &str, args: &[Value]) -> Result<Row> {
        self.query_opt(sql, args)?.ok_or_else(|| {
            StoreError::Corrupt(format!("no row from {}", sql.split_whitespace().next().unwrap_or("")))
        })
    }
}

/// `sql` with PostgreSQL's `$N` placeholders written as SQLite's `?N` (the same positional
/// parameters; SQLite would read `$1` as a parameter *named* `$1`).
pub(crate) fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_sqlites_and_nothing_else_changes() {
        assert_eq!(
            sqlite_placeholders("SELECT '$x', a FROM t WHERE b = $1 AND c = $12"),
            "SELECT '$x', a FROM t WHERE b = ?1 AND c = ?12"
        );
    }

    #[test]
    fn values_convert_both_ways_and_mismatches_are_corrupt() {
        let row = Row(vec![Value::from(7u64), Value::Null, Value::from("x"), Value::Int(3)]);
        assert_eq!(row.get::<u32>(0).unwrap(), 7);
        assert_eq!(row.get::<Option<String>>(1).unwrap(), None);
        assert_eq!(row.get::<String>(2).unwrap(), "x");
        assert_eq!(row.get::<f64>(3).unwrap(), 3.0);
        assert!(row.get::<String>(0).is_err());
        assert!(row.get::<i64>(1).is_err(), "a NULL is not a number");
        assert_eq!(Value::from(u64::MAX), Value::Int(i64::MAX));
        assert!(Row(vec![Value::Int(-1)]).get::<u64>(0).is_err());
    }
}
