//! The connection pool (r2d2) and each connection's prepared statements.
//!
//! The synchronous `postgres` client prepares a statement for every query
//! given as text (one more round trip each time), so each pooled
//! connection keeps the statements it prepared, by their SQL text: after
//! the first use a statement costs one round trip.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement};

use crate::location::Location;

/// Opens connections to one store's database, with the store's schema as
/// their search path (see [`Location::parse`]).
pub(crate) struct Manager {
    pub(crate) location: Location,
}

impl Manager {
    /// One new connection, outside the pool.
    pub(crate) fn open(&self) -> Result<Conn, postgres::Error> {
        let client = self.location.config.connect(NoTls)?;
        Ok(Conn {
            client,
            statements: Statements::default(),
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
        conn.client.is_closed()
    }
}

/// A connection and the statements prepared on it.
pub(crate) struct Conn {
    client: Client,
    statements: Statements,
}

impl Conn {
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

/// The statements prepared on one connection, by SQL text.
#[derive(Default)]
pub(crate) struct Statements(HashMap<String, Statement>);

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
        if let Some(statement) = self.statements.0.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.0.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// The rows `sql` returns.
    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.client.query(&statement, params)
    }

    /// The one row `sql` returns, if any.
    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.client.query_opt(&statement, params)
    }

    /// How many rows `sql` changed.
    pub(crate) fn execute(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<u64, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.client.execute(&statement, params)
    }
}
