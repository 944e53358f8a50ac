//! Where a store lives: a `postgres://` URL and the schema named in it
//! ([`Location::parse`]).

use std::str::FromStr as _;
use std::time::Duration;

use weft_core::StoreError;

/// The schema a URL without a `schema` parameter names.
pub const DEFAULT_SCHEMA: &str = "weft";

/// How long one attempt to open a connection may take before it fails (a
/// host that drops packets would otherwise hold a command for minutes); a
/// `connect_timeout` in the URL overrides it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed store URL: the connection settings, the schema, and the URL as
/// it may be shown (without a password).
#[derive(Clone)]
pub(crate) struct Location {
    /// The client's settings, without the `schema` parameter.
    pub(crate) config: postgres::Config,
    /// The schema holding the store's tables (validated: lower-case ASCII
    /// letters, digits and `_`, not starting with a digit, at most 63 bytes).
    pub(crate) schema: String,
    /// The URL without its password, for messages.
    pub(crate) shown: String,
}

impl Location {
    /// Parses `url`: `postgres://[user[:password]@]host[:port]/database`
    /// (or `postgresql://`), with the client's usual query parameters
    /// (`connect_timeout`, `application_name`, `options`, `sslmode=disable`
    /// …) and weft's own `schema=NAME` (default [`DEFAULT_SCHEMA`]).
    pub(crate) fn parse(url: &str) -> Result<Self, StoreError> {
        let shown = redact(url);
        let invalid =
            |why: String| StoreError::Backend(format!("the store URL {shown} is invalid: {why}"));
        if !is_postgres_url(url) {
            return Err(invalid(
                "it must start with postgres:// or postgresql://".into(),
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut schema = None;
        let mut rest = Vec::new();
        for param in query.split('&').filter(|p| !p.is_empty()) {
            match param.split_once('=') {
                Some(("schema", name)) => schema = Some(name.to_owned()),
                _ => rest.push(param),
            }
        }
        let schema = schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
        check_schema(&schema).map_err(invalid)?;
        let url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config =
            postgres::Config::from_str(&url).map_err(|e| invalid(crate::sql::describe(&e)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("weft");
        }
        // The schema is every connection's search path from its start (in
        // the startup packet: no extra round trip); the name needs no
        // quoting, being lower-case letters, digits and `_`.
        let options = match config.get_options() {
            Some(options) if !options.is_empty() => format!("{options} -c search_path={schema}"),
            _ => format!("-c search_path={schema}"),
        };
        config.options(&options);
        Ok(Self {
            config,
            schema,
            shown,
        })
    }

    /// The schema's name as an SQL identifier.
    pub(crate) fn schema_ident(&self) -> String {
        format!("\"{}\"", self.schema)
    }
}

/// Whether `text` is a PostgreSQL URL (`postgres://` or `postgresql://`):
/// how a caller holding a store location tells it from a file path.
pub fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// `schema` is a name weft creates and quotes the same way everywhere.
fn check_schema(schema: &str) -> Result<(), String> {
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "schema `{schema}`: a schema name is 1 to 63 lower-case ASCII letters, digits and `_`, \
             not starting with a digit"
        ))
    }
}

/// `url` without a password: the user info keeps only the user, and a
/// `password` query parameter is left out.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| !p.starts_with("password="))
                .collect();
            if kept.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            redact("postgres://ann:secret@db.example:5433/weft?schema=x&password=p2"),
            "postgres://ann@db.example:5433/weft?schema=x"
        );
        assert_eq!(
            redact("postgresql://db/weft?password=p"),
            "postgresql://db/weft"
        );
        assert_eq!(
            redact("postgres://root@127.0.0.1/test"),
            "postgres://root@127.0.0.1/test"
        );
    }

    #[test]
    fn the_schema_comes_from_the_url() {
        let at = Location::parse("postgres://root@127.0.0.1:5432/test?schema=run_7").unwrap();
        assert_eq!(at.schema, "run_7");
        assert_eq!(at.config.get_dbname(), Some("test"));
        assert_eq!(
            at.config.get_options(),
            Some("-c search_path=run_7"),
            "the schema is the search path"
        );
        let default = Location::parse("postgresql://root@127.0.0.1/test").unwrap();
        assert_eq!(default.schema, DEFAULT_SCHEMA);
        assert_eq!(default.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        for bad in [
            "postgres://h/db?schema=Upper",
            "postgres://h/db?schema=1x",
            "postgres://h/db?schema=a;drop",
            "postgres://h/db?schema=",
            "postgres://h/db?nonsense=1",
            "mysql://h/db",
        ] {
            let err = Location::parse(bad).err().expect(bad).to_string();
            assert!(err.contains("is invalid"), "{bad}: {err}");
        }
        let err = Location::parse("postgres://u:pw@h/db?schema=Upper")
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("pw"), "{err}");
    }
}
