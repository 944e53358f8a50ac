//! The connection pool (r2d2), each connection's prepared statements, and
//! how a lost connection is told apart from a failed statement.
//!
//! The synchronous `postgres` client prepares a statement for every query
//! given as text (one more round trip each time), so each pooled
//! connection keeps the statements it prepared, by their SQL text: after
//! the first use a statement costs one round trip.
//!
//! **Lost connections.** When PostgreSQL restarts or a backend is killed
//! (`pg_terminate_backend`), the client learns it only at its next use of
//! the connection. Every failure a [`Session`] (or [`Conn::begin`] /
//! [`Statements::commit`]) sees is classified ([`is_connection_loss`]) and the
//! connection marked [`Loss`]: r2d2 then drops it instead of pooling it
//! again ([`Manager::has_broken`]), and the store decides whether the
//! operation may run again (`PostgresStore::retrying`). Each connection
//! also carries the [`Generation`] it was opened or last checked in: a loss
//! starts a new one, and a connection from an older generation (likely
//! killed along with the lost one) is checked with an empty query before
//! use, so one restart costs one failed statement, not one per pooled
//! connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement};

use crate::location::Location;

/// Opens connections to one store's database, with the store's schema as
/// their search path (see [`Location::parse`]).
pub(crate) struct Manager {
    pub(crate) location: Location,
    /// The store's connection generation.
    pub(crate) generation: Generation,
}

/// Counts the connection losses a store has seen: a connection opened (or
/// last checked) before the latest loss may be dead too.
#[derive(Clone, Default)]
pub(crate) struct Generation(Arc<AtomicU64>);

impl Generation {
    /// The current generation.
    pub(crate) fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// A connection was found lost: every older connection is suspect.
    pub(crate) fn lost(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

impl Manager {
    /// One new connection, outside the pool.
    pub(crate) fn open(&self) -> Result<Conn, postgres::Error> {
        let generation = self.generation.current();
        let client = self.location.config.connect(NoTls)?;
        Ok(Conn {
            client,
            statements: Statements::default(),
            generation,
        })
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, postgres::Error> {
        self.open()
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(drop)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.is_closed() || conn.statements.loss.is_some()
    }
}

/// A connection and the statements prepared on it.
pub(crate) struct Conn {
    client: Client,
    statements: Statements,
    /// The [`Generation`] it was opened or last checked in.
    generation: u64,
}

/// How an operation lost its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// Before `COMMIT` was sent (or in a statement that commits alone):
    /// a transaction that had not sent `COMMIT` wrote nothing.
    Before,
    /// While committing: whether the transaction committed is unknown.
    InCommit,
}

impl Conn {
    /// How the connection was lost, if it was.
    pub(crate) fn loss(&self) -> Option<Loss> {
        self.statements.loss
    }

    /// Whether the connection may be used in generation `current`: one
    /// from an older generation answers an empty query first (one round
    /// trip, only after a loss), and is marked lost if it does not.
    pub(crate) fn check(&mut self, current: u64) -> bool {
        if self.generation >= current {
            return true;
        }
        match self.client.simple_query("") {
            Ok(_) => {
                self.generation = current;
                true
            }
            Err(_) => {
                self.statements.loss = Some(Loss::Before);
                false
            }
        }
    }

    /// Starts a transaction; a lost connection is noted.
    pub(crate) fn begin(
        &mut self,
    ) -> Result<(postgres::Transaction<'_>, &mut Statements), postgres::Error> {
        let Self {
            client, statements, ..
        } = self;
        match client.transaction() {
            Ok(tx) => Ok((tx, statements)),
            Err(e) => {
                statements.noted(&e, Loss::Before);
                Err(e)
            }
        }
    }

    /// A session on the connection itself: each statement commits alone.
    pub(crate) fn session(&mut self) -> Session<'_, Client> {
        Session {
            client: &mut self.client,
            statements: &mut self.statements,
        }
    }

    /// The client and the statement cache, apart (to open a transaction
    /// and run cached statements in it: [`Session::new`]).
    pub(crate) fn split(&mut self) -> (&mut Client, &mut Statements) {
        (&mut self.client, &mut self.statements)
    }
}

/// The statements prepared on one connection, by SQL text, and whether
/// the connection was found lost.
#[derive(Default)]
pub(crate) struct Statements {
    prepared: HashMap<String, Statement>,
    loss: Option<Loss>,
}

impl Statements {
    /// Notes `e`, if it says the connection is lost, as a loss `when`.
    fn noted(&mut self, e: &postgres::Error, when: Loss) {
        if is_connection_loss(e) && self.loss.is_none() {
            self.loss = Some(when);
        }
    }

    /// Commits `tx`; a connection lost meanwhile is noted as
    /// [`Loss::InCommit`].
    pub(crate) fn commit(&mut self, tx: postgres::Transaction<'_>) -> Result<(), postgres::Error> {
        tx.commit().inspect_err(|e| self.noted(e, Loss::InCommit))
    }
}

/// Whether `e` says the connection is gone (rather than that a statement
/// failed): the client found it closed or failed to read or write it, or
/// the server ended the session (SQLSTATE class 08, connection exception,
/// or 57P, operator intervention: `pg_terminate_backend`, a shutdown, a
/// server starting up).
pub(crate) fn is_connection_loss(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08") || code.starts_with("57P");
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Statements run through a client (the connection, or a transaction on
/// it), each prepared once per connection.
pub(crate) struct Session<'c, C: GenericClient> {
    client: &'c mut C,
    statements: &'c mut Statements,
}

/// Query parameters.
pub(crate) type Params<'a> = [&'a (dyn ToSql + Sync)];

impl<'c, C: GenericClient> Session<'c, C> {
    /// Statements run through `client` (a transaction on the connection
    /// whose cache `statements` is).
    pub(crate) fn new(client: &'c mut C, statements: &'c mut Statements) -> Self {
        Self { client, statements }
    }

    fn prepared(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements
            .prepared
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// `result`, with a lost connection noted.
    fn noted<T>(&mut self, result: Result<T, postgres::Error>) -> Result<T, postgres::Error> {
        result.inspect_err(|e| self.statements.noted(e, Loss::Before))
    }

    /// The rows `sql` returns.
    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.prepared(sql);
        let rows = statement.and_then(|statement| self.client.query(&statement, params));
        self.noted(rows)
    }

    /// The one row `sql` returns, if any.
    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.prepared(sql);
        let row = statement.and_then(|statement| self.client.query_opt(&statement, params));
        self.noted(row)
    }

    /// How many rows `sql` changed.
    pub(crate) fn execute(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<u64, postgres::Error> {
        let statement = self.prepared(sql);
        let changed = statement.and_then(|statement| self.client.execute(&statement, params));
        self.noted(changed)
    }
}
