//! Talking to a `weft serve` (`--server URL`): JSON over HTTP with the
//! bearer token, the API's problem documents turned back into the CLI's
//! errors and exit codes.

use std::time::Duration;

use anyhow::anyhow;
use serde_json::Value;

use crate::exit::Failure;

/// A server's base URL and token.
pub struct Client {
    agent: ureq::Agent,
    /// For event streams: no overall timeout (a run may take hours).
    streams: ureq::Agent,
    base: String,
    token: Option<String>,
}

/// A server's answer: its status and JSON body.
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The body (JSON; `null` when empty).
    pub body: Value,
}

impl Client {
    /// A client of the server at `base` (`http://127.0.0.1:8080`), sending
    /// `token` if given.
    pub fn new(base: &str, token: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A deploy compiles components and a start may wait: generous.
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        let streams = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .build()
            .into();
        Self {
            agent,
            streams,
            base: base.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    /// `GET path`.
    ///
    /// # Errors
    /// The server cannot be reached or answers no JSON.
    pub fn get(&self, path: &str) -> Result<Reply, Failure> {
        let request = self.authorized(self.agent.get(self.url(path)));
        self.reply(path, request.call())
    }

    /// `POST path` with a JSON body.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn post_json(&self, path: &str, body: &Value) -> Result<Reply, Failure> {
        let request = self.authorized(self.agent.post(self.url(path)));
        self.reply(path, request.send_json(body))
    }

    /// `POST path` with `bytes` of `content_type`.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn post_bytes(
        &self,
        path: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<Reply, Failure> {
        let request = self
            .authorized(self.agent.post(self.url(path)))
            .content_type(content_type);
        self.reply(path, request.send(bytes))
    }

    /// Opens the event stream at `path` (SSE) after event `after`.
    ///
    /// # Errors
    /// The server cannot be reached, or answers with a problem.
    pub fn stream(&self, path: &str, after: u64) -> Result<impl std::io::Read + use<>, Failure> {
        let request = self
            .authorized(self.streams.get(self.url(path)))
            .header("Accept", "text/event-stream")
            .header("Last-Event-ID", after.to_string());
        let response = request.call().map_err(|e| {
            Failure::other(anyhow!("cannot reach the server at {}: {e}", self.base))
        })?;
        if response.status().as_u16() != 200 {
            return Err(self
                .reply(path, Ok(response))?
                .ok()
                .err()
                .unwrap_or_else(|| {
                    Failure::other(anyhow!("{path}: the server did not open an event stream"))
                }));
        }
        Ok(response.into_body().into_reader())
    }

    fn reply(
        &self,
        path: &str,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Reply, Failure> {
        let mut response = sent.map_err(|e| {
            Failure::other(anyhow!("cannot reach the server at {}: {e}", self.base))
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| Failure::other(anyhow!("{path}: cannot read the server's answer: {e}")))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| {
                Failure::other(anyhow!("{path}: the server's answer is not JSON: {e}"))
            })?
        };
        Ok(Reply { status, body })
    }
}

impl Reply {
    /// The body of a successful answer, or the problem as the CLI's
    /// failure: the detail in the CLI's words; bad requests, missing runs
    /// and conflicts are invalid input (exit 2), the rest other errors (5).
    ///
    /// # Errors
    /// The problem.
    pub fn ok(self) -> Result<Value, Failure> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        let detail = self.body.get("detail").and_then(Value::as_str).map_or_else(
            || format!("the server answered {}", self.status),
            str::to_owned,
        );
        let error = anyhow!("{detail}");
        Err(match self.status {
            400 | 401 | 404 | 409 | 413 | 422 => Failure::invalid(error),
            _ => Failure::other(error),
        })
    }
}
