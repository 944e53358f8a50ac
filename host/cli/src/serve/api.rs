//! The HTTP API (`/v1`): each handler translates a request into the command
//! the CLI's twin sends (the same loading, the same runtime requests, the
//! same errors), on tokio's blocking pool. The OpenAPI document is generated
//! from the handlers' annotations (`GET /openapi.json`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request as HttpRequest, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::sync::{Semaphore, watch};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weft_core::{
    Clock as _, Event, ResumeTarget, RunCursor, RunFilter, RunId, RunStatus, StepId, StepPath,
    Timestamp,
};
use weft_runtime::{Request, RuntimeError, SystemClock};

use super::auth::Access;
use super::host::{Accepted, Host, Lookup, current};
use super::problem::{Kind, Problem};
use crate::engine;

/// The longest `?wait=` a request may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// The largest JSON request body.
pub const MAX_JSON_BODY: usize = 16 << 20;
/// The most runs or events in one page.
pub const MAX_PAGE: usize = 1_000;
/// Runs and events per page when the request says nothing.
const DEFAULT_PAGE: usize = 100;
/// How often an event stream looks at its run's log when nothing was
/// announced (writes by other processes).
const SSE_POLL: Duration = Duration::from_secs(1);

/// What every handler shares.
pub struct Server {
    /// The host's state.
    pub host: Arc<Host>,
    /// How requests are checked.
    pub access: Access,
    /// The metrics.
    pub meter: Arc<super::metrics::Meter>,
    /// Open event streams, bounded.
    pub streams: Arc<Semaphore>,
    /// Turns `true` when the server shuts down: event streams end.
    pub shutdown: watch::Receiver<bool>,
    /// The largest bundle a deploy takes.
    pub max_bundle: usize,
}

type Shared = State<Arc<Server>>;

/// The router: the API under `/v1` behind the token, and the public probes
/// and OpenAPI document.
pub fn router(server: Arc<Server>) -> Router {
    let max_bundle = server.max_bundle;
    let (v1, mut openapi) = OpenApiRouter::new()
        .routes(routes!(start_run, list_runs))
        .routes(routes!(get_run))
        .routes(routes!(run_events))
        .routes(routes!(resume_run))
        .routes(routes!(cancel_run))
        .routes(routes!(rerun_run))
        .routes(routes!(list_workflows))
        .routes(routes!(get_workflow))
        .routes(routes!(metrics))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_JSON_BODY))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(deploy))
                .layer(axum::extract::DefaultBodyLimit::max(max_bundle)),
        )
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&server),
            authorize,
        ))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(healthz))
                .routes(routes!(readyz)),
        )
        .split_for_parts();
    openapi.info.title = "weft".into();
    openapi.info.version = env!("CARGO_PKG_VERSION").into();
    openapi.info.description =
        Some("Run workflows of sandboxed WebAssembly steps: the HTTP API of `weft serve`.".into());
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
    let document = Arc::new(openapi);
    v1.route(
        "/openapi.json",
        axum::routing::get(move || {
            let document = Arc::clone(&document);
            async move { Json(document) }
        }),
    )
    .fallback(|| async { Problem::not_found("no such route") })
    .method_not_allowed_fallback(|| async {
        Problem::new(
            Kind::MethodNotAllowed,
            "this route does not take that method (see /openapi.json)",
        )
    })
    .with_state(server)
}

/// Refuses a request without the token (401, with `WWW-Authenticate`).
async fn authorize(State(server): Shared, request: HttpRequest, next: Next) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if server.access.allows(header) {
        return next.run(request).await;
    }
    let mut response = Problem::new(
        Kind::Unauthorized,
        "send `Authorization: Bearer TOKEN` (the token `weft serve` printed at its first start, or its --token-file)",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// A JSON body whose rejection is a problem document.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(request: HttpRequest, state: &S) -> Result<Self, Problem> {
        refuse_announced_over(&request, MAX_JSON_BODY, "the body")?;
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

/// A body whose `Content-Length` is over `limit` is refused before any of
/// it is read (413); a body without one is cut at the limit as it is read.
fn refuse_announced_over(request: &HttpRequest, limit: usize, what: &str) -> Result<(), Problem> {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match announced {
        Some(length) if length > limit as u64 => Err(Problem::new(
            Kind::PayloadTooLarge,
            format!("{what} is {length} bytes; this server takes at most {limit}"),
        )),
        _ => Ok(()),
    }
}

/// Query parameters whose rejection is a problem document.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection| Problem::invalid(rejection.body_text()))
    }
}

/// The `{id}` path parameter, whose rejection is a problem document.
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Self(id))
            .map_err(|rejection| Problem::invalid(rejection.body_text()))
    }
}

fn json_rejection(rejection: &JsonRejection) -> Problem {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Problem::new(
            Kind::PayloadTooLarge,
            format!("the body is larger than {MAX_JSON_BODY} bytes"),
        );
    }
    let problem = Problem::invalid(rejection.body_text());
    // serde's path of the failing field, as a JSON pointer.
    match rejection {
        JsonRejection::JsonDataError(e) => {
            let text = e.body_text();
            match text
                .split_once(": ")
                .and_then(|(_, rest)| rest.split_once(": "))
            {
                Some((path, _)) if !path.contains(' ') => {
                    problem.with("pointer", format!("/{}", path.replace('.', "/")))
                }
                _ => problem,
            }
        }
        _ => problem,
    }
}

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(Problem::internal(format!("a request handler failed: {e}"))))
}

fn run_id(id: &str) -> Result<RunId, Problem> {
    RunId::new(id).map_err(|e| Problem::invalid(format!("run id: {e}")))
}

/// `?wait=`: how long to wait for the run to settle.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Answer with the run's result if it settles (finishes, fails,
    /// suspends, is canceled) within this time (`500ms`, `30s`, `2m`; at
    /// most 5m), else 202 with its status.
    wait: Option<String>,
}

impl WaitQuery {
    fn duration(&self) -> Result<Option<Duration>, Problem> {
        self.wait
            .as_deref()
            .map(|text| {
                crate::home::parse_duration(text)
                    .map_err(|e| Problem::invalid(format!("wait: {e}")).with("parameter", "wait"))
                    .and_then(|d| {
                        if d > MAX_WAIT {
                            Err(Problem::invalid("wait: at most 5m"))
                        } else {
                            Ok(d)
                        }
                    })
            })
            .transpose()
    }
}

fn empty_object() -> Value {
    json!({})
}

/// `POST /v1/runs`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// The workflow id (the manifest's `id`) of a deployed workflow.
    workflow: String,
    /// A deployed version: its digest, or at least its first 8
    /// characters; the newest when absent.
    #[serde(default)]
    version: Option<String>,
    /// The workflow input.
    #[serde(default = "empty_object")]
    input: Value,
    /// The new run's id (a UUID when absent). Starting an existing run id
    /// again with the same request answers that run (200), with another
    /// request 409.
    #[serde(default)]
    run_id: Option<String>,
}

/// A run as `weft status --json` prints it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RunJson {
    run_id: String,
    workflow_id: String,
    /// running, success, failed, suspended, canceled.
    status: String,
    /// The output (success).
    output: Option<Value>,
    /// The error (failed).
    error: Option<Value>,
    /// The suspended steps, with their payloads and labels.
    suspended: Option<Vec<Value>>,
    /// Every step execution, by address.
    steps: Vec<Value>,
    /// What a running run waits for: `{path, kind: sleep|retry, due}`.
    timers: Option<Vec<Value>>,
    /// The process whose live lease holds the run, if any.
    held_by: Option<String>,
    /// The workflow state.
    state: Value,
}

fn run_response(status: StatusCode, result: &weft_core::RunResult) -> Response {
    (status, Json(result)).into_response()
}

/// Start a run of a deployed workflow (`weft run`).
#[utoipa::path(
    post,
    path = "/v1/runs",
    params(WaitQuery, ("Idempotency-Key" = Option<String>, Header, description = "Starting again with the same key and body answers the same run (200); another body 409"),
           ("traceparent" = Option<String>, Header, description = "W3C trace context: the run's trace continues it (with --otlp-endpoint)")),
    request_body = StartBody,
    responses(
        (status = 201, description = "Started (and settled, with `?wait`)", body = RunJson),
        (status = 200, description = "The run this idempotency key or run id started", body = RunJson),
        (status = 202, description = "Started; not settled within `?wait`", body = RunJson),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn start_run(
    State(server): Shared,
    Params(query): Params<WaitQuery>,
    headers: HeaderMap,
    Body(body): Body<StartBody>,
) -> Result<Response, Problem> {
    let wait = query.duration()?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .filter(|k| (1..=255).contains(&k.len()))
                .ok_or_else(|| {
                    Problem::invalid("Idempotency-Key: 1 to 255 visible ASCII characters")
                })?
                .to_owned(),
        ),
    };
    let traceparent = match headers.get("traceparent") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .filter(|t| super::traces::parse_traceparent(t).is_some())
                .ok_or_else(|| {
                    Problem::invalid(
                        "traceparent: not a W3C trace context (00-TRACEID-SPANID-FLAGS)",
                    )
                })?
                .to_owned(),
        ),
    };
    let host = Arc::clone(&server.host);
    blocking(move || start(&host, body, key, traceparent, wait)).await
}

fn start(
    host: &Host,
    body: StartBody,
    key: Option<String>,
    traceparent: Option<String>,
    wait: Option<Duration>,
) -> Result<Response, Problem> {
    let workflow = StepId::new(&body.workflow)
        .map_err(|e| Problem::invalid(format!("workflow: {e}")).with("pointer", "/workflow"))?;
    let run = match (&body.run_id, &key) {
        (Some(id), _) => run_id(id).map_err(|p| p.with("pointer", "/run_id"))?,
        // The key names the run: a retry finds the run its first try started.
        (None, Some(key)) => run_id(&format!(
            "key-{}",
            &hex::encode(Sha256::digest(key.as_bytes()))[..32]
        ))?,
        (None, None) => run_id(&uuid::Uuid::new_v4().to_string())?,
    };
    let registered = host
        .deployed(&workflow, body.version.as_deref())
        .map_err(|lookup| match lookup {
            Lookup::NotFound(detail) => Problem::not_found(detail),
            Lookup::Failed(failure) => failure.into(),
        })?;
    // Recorded before the run exists, so that whichever process settles
    // it exports into this trace (the first start of a run id wins).
    if let Some(traceparent) = &traceparent {
        host.store().put_trace(&run, traceparent)?;
    }
    let request = Request::Start {
        workflow: registered,
        run: run.clone(),
        input: body.input.clone(),
        detach: false,
    };
    match host.submit(request, wait.unwrap_or_default()) {
        Ok(Accepted::Settled(result)) => Ok(run_response(StatusCode::CREATED, &result)),
        Ok(Accepted::Going) => {
            let status = if wait.is_some() {
                StatusCode::ACCEPTED
            } else {
                StatusCode::CREATED
            };
            Ok(run_response(status, &current(host.store(), &run)?))
        }
        Err(RuntimeError::Exists { .. }) => {
            if same_start(host, &run, &workflow, &body)? {
                Ok(run_response(StatusCode::OK, &current(host.store(), &run)?))
            } else {
                Err(Problem::new(
                    Kind::Conflict,
                    format!(
                        "a run `{run}` exists already, started by another request (its workflow, version or input differ)"
                    ),
                ))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the stored run `run` was started by the same request as `body`.
fn same_start(
    host: &Host,
    run: &RunId,
    workflow: &StepId,
    body: &StartBody,
) -> Result<bool, Problem> {
    let (meta, first) = host.store().load_page(run, 0, 1)?;
    let input = match first.first() {
        Some(Event::RunStarted { input, .. }) => input,
        _ => return Ok(false),
    };
    let version = match &body.version {
        None => true,
        Some(v) => meta
            .workflow_digest
            .as_deref()
            .is_some_and(|d| d.starts_with(v.as_str())),
    };
    Ok(meta.workflow_id == *workflow && *input == body.input && version)
}

/// `GET /v1/runs` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only runs with this status (running, success, failed, suspended, canceled).
    status: Option<String>,
    /// Only runs of this workflow id.
    workflow: Option<String>,
    /// Only runs created at or after this time (RFC 3339).
    since: Option<String>,
    /// Where the page starts: the `next` of the previous page.
    cursor: Option<String>,
    /// At most this many runs (1 to 1000; 100 when absent).
    limit: Option<usize>,
}

/// A page of runs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunsPage {
    /// The runs, newest first, as `weft runs --json` lists them.
    runs: Vec<Value>,
    /// The cursor of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

fn page_limit(limit: Option<usize>) -> Result<usize, Problem> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => {
            Err(Problem::invalid(format!("limit: 1 to {MAX_PAGE}")).with("parameter", "limit"))
        }
    }
}

/// List runs, newest first (`weft runs`).
#[utoipa::path(
    get,
    path = "/v1/runs",
    params(RunsQuery),
    responses(
        (status = 200, body = RunsPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_runs(
    State(server): Shared,
    Params(query): Params<RunsQuery>,
) -> Result<Json<RunsPage>, Problem> {
    let status = query
        .status
        .as_deref()
        .map(|s| {
            RunStatus::parse(s).ok_or_else(|| {
                Problem::invalid(format!(
                    "status: unknown status `{s}` (running, success, failed, suspended, canceled)"
                ))
            })
        })
        .transpose()?;
    let workflow = query
        .workflow
        .as_deref()
        .map(|w| StepId::new(w).map_err(|e| Problem::invalid(format!("workflow: {e}"))))
        .transpose()?;
    let since = query
        .since
        .as_deref()
        .map(|text| {
            chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .and_then(|t| u64::try_from(t.timestamp_micros()).ok())
                .map(Timestamp)
                .ok_or_else(|| Problem::invalid(format!("since: `{text}` is not an RFC 3339 time")))
        })
        .transpose()?;
    let after = query
        .cursor
        .as_deref()
        .map(|text| {
            hex::decode(text)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<RunCursor>(&bytes).ok())
                .ok_or_else(|| Problem::invalid("cursor: not a cursor this server gave"))
        })
        .transpose()?;
    let limit = page_limit(query.limit)?;
    let filter = RunFilter {
        status,
        workflow,
        created_from: since,
        ..RunFilter::default()
    };
    let host = Arc::clone(&server.host);
    blocking(move || {
        let page = host.store().runs(&filter, after.as_ref(), limit)?;
        let runs = page
            .runs
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect();
        let next = page
            .next
            .map(|cursor| hex::encode(serde_json::to_vec(&cursor).unwrap_or_default()));
        Ok(Json(RunsPage { runs, next }))
    })
    .await
}

/// A run: status, output or error, steps, suspended steps (`weft status`).
#[utoipa::path(
    get,
    path = "/v1/runs/{id}",
    params(("id" = String, Path, description = "The run id")),
    responses(
        (status = 200, body = RunJson),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_run(State(server): Shared, Id(id): Id) -> Result<Response, Problem> {
    let run = run_id(&id)?;
    let host = Arc::clone(&server.host);
    blocking(move || Ok(run_response(StatusCode::OK, &current(host.store(), &run)?))).await
}

/// `GET /v1/runs/{id}/events` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events after this sequence number (0: from the first).
    after: Option<u64>,
    /// At most this many events (1 to 1000; 100 when absent). Not for SSE.
    limit: Option<usize>,
}

/// A page of a run's events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventsPage {
    /// The events, as `weft events --json` prints them; the first has
    /// sequence number `after + 1`.
    events: Vec<Value>,
    /// The sequence number of the last event of the page (the next page's
    /// `after`).
    next: u64,
}

/// A run's events: a page, or with `Accept: text/event-stream` a live SSE
/// stream (`weft events [--follow]`). Each SSE event's `id` is its
/// sequence number (`Last-Event-ID` resumes after it); an `end` event
/// comes when the run settles.
#[utoipa::path(
    get,
    path = "/v1/runs/{id}/events",
    params(("id" = String, Path, description = "The run id"), EventsQuery,
           ("Last-Event-ID" = Option<u64>, Header, description = "SSE: resume after this sequence number")),
    responses(
        (status = 200, description = "A page of events, or (`Accept: text/event-stream`) a live stream",
         content((EventsPage = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn run_events(
    State(server): Shared,
    Id(id): Id,
    Params(query): Params<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let run = run_id(&id)?;
    let stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let host = Arc::clone(&server.host);
    if !stream {
        let after = query.after.unwrap_or(0);
        let limit = page_limit(query.limit)?;
        return blocking(move || {
            let (_, events) = host.store().load_page(&run, after, limit)?;
            let next = after + events.len() as u64;
            let events = events
                .iter()
                .map(|e| serde_json::to_value(e).unwrap_or_default())
                .collect();
            Ok(Json(EventsPage { events, next }).into_response())
        })
        .await;
    }
    let resume_after = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| Problem::invalid("Last-Event-ID: a sequence number"))
        })
        .transpose()?;
    let after = resume_after.or(query.after).unwrap_or(0);
    let permit = Arc::clone(&server.streams)
        .try_acquire_owned()
        .map_err(|_| {
            Problem::new(
                Kind::TooManyRequests,
                "too many event streams are open on this server",
            )
        })?;
    // The run must exist, and what the stream starts after tells whether
    // it has settled already.
    let settled = {
        let host = Arc::clone(&host);
        let run = run.clone();
        blocking(move || {
            let (_, last) = host.store().load_page(&run, after.saturating_sub(1), 1)?;
            Ok(after > 0 && last.first().and_then(settles).is_some())
        })
        .await?
    };
    let follow = Follow {
        host,
        run,
        seen: after,
        settled,
        changes: server.host.changes().subscribe(),
        shutdown: server.shutdown.clone(),
        pending: std::collections::VecDeque::new(),
        end: None,
        done: false,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await?;
        Some((Ok::<_, std::convert::Infallible>(event), follow))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The status a run settles in with `event`, if it does.
fn settles(event: &Event) -> Option<&'static str> {
    RunStatus::after(event)
        .filter(|status| *status != RunStatus::Running)
        .map(RunStatus::as_str)
}

/// An open event stream.
struct Follow {
    host: Arc<Host>,
    run: RunId,
    seen: u64,
    settled: bool,
    changes: tokio::sync::broadcast::Receiver<RunId>,
    shutdown: watch::Receiver<bool>,
    pending: std::collections::VecDeque<(u64, Event)>,
    /// The status the run settled in, once the stream has sent all before.
    end: Option<&'static str>,
    done: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Follow {
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if self.done {
                return None;
            }
            if let Some((seq, event)) = self.pending.pop_front() {
                let mut sse = SseEvent::default().id(seq.to_string());
                sse = sse
                    .json_data(&event)
                    .unwrap_or_else(|_| SseEvent::default());
                return Some(sse);
            }
            if let Some(status) = self.end.take() {
                self.done = true;
                return Some(
                    SseEvent::default()
                        .event("end")
                        .data(json!({ "run_id": self.run, "status": status }).to_string()),
                );
            }
            if *self.shutdown.borrow() {
                return None;
            }
            let (host, run, after) = (Arc::clone(&self.host), self.run.clone(), self.seen);
            let page = tokio::task::spawn_blocking(move || {
                host.store().load_page(&run, after, crate::paged::PAGE)
            })
            .await;
            let events = match page {
                Ok(Ok((_, events))) => events,
                // The run is gone or the store failed: the stream ends (the
                // client reconnects with Last-Event-ID).
                _ => return None,
            };
            if !events.is_empty() {
                for event in events {
                    self.seen += 1;
                    if let Some(status) = RunStatus::after(&event) {
                        self.settled = status != RunStatus::Running;
                    }
                    self.pending.push_back((self.seen, event));
                }
                continue;
            }
            if self.settled {
                self.end = Some(self.last_status().await);
                continue;
            }
            self.wait().await;
        }
    }

    /// The status of the settled run, from its last event.
    async fn last_status(&self) -> &'static str {
        let (host, run, seen) = (Arc::clone(&self.host), self.run.clone(), self.seen);
        tokio::task::spawn_blocking(move || {
            host.store()
                .load_page(&run, seen.saturating_sub(1), 1)
                .ok()
                .and_then(|(_, last)| last.first().and_then(settles))
        })
        .await
        .ok()
        .flatten()
        .unwrap_or("running")
    }

    /// Until the run is announced, a second passes, or the server stops.
    async fn wait(&mut self) {
        let deadline = tokio::time::sleep(SSE_POLL);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return,
                _ = self.shutdown.changed() => return,
                changed = self.changes.recv() => match changed {
                    Ok(run) if run != self.run => {}
                    // Ours, or announcements were missed: look.
                    _ => return,
                },
            }
        }
    }
}

/// `POST /v1/runs/{id}/resume`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeBody {
    /// The suspended step's address (`approve`, `items[2].check`).
    #[serde(default)]
    step: Option<String>,
    /// A resume label of the suspended step(s).
    #[serde(default)]
    label: Option<String>,
    /// Every suspended step.
    #[serde(default)]
    all: bool,
    /// The resume data (checked against the step's resume schema).
    #[serde(default = "empty_object")]
    data: Value,
}

/// Resume suspended steps (`weft resume`).
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/resume",
    params(("id" = String, Path, description = "The run id"), WaitQuery),
    request_body = ResumeBody,
    responses(
        (status = 200, description = "Resumed and settled within `?wait`", body = RunJson),
        (status = 202, description = "Resumed; the run goes on", body = RunJson),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn resume_run(
    State(server): Shared,
    Id(id): Id,
    Params(query): Params<WaitQuery>,
    Body(body): Body<ResumeBody>,
) -> Result<Response, Problem> {
    let run = run_id(&id)?;
    let wait = query.duration()?;
    let target = match (body.step, body.label, body.all) {
        (None, None, true) => ResumeTarget::All,
        (Some(path), None, false) => ResumeTarget::Path(
            StepPath::parse(&path)
                .map_err(|e| Problem::invalid(format!("step: {e}")).with("pointer", "/step"))?,
        ),
        (None, Some(label), false) => ResumeTarget::Label(label),
        (None, None, false) => ResumeTarget::Only,
        _ => return Err(Problem::invalid("give at most one of step, label and all")),
    };
    let host = Arc::clone(&server.host);
    blocking(move || {
        let meta = engine::run_meta(host.store(), &run)?;
        let workflow = host.registered_run(&meta)?;
        let request = Request::Resume {
            workflow,
            run: run.clone(),
            target,
            payload: body.data,
        };
        settled_or_going(
            &host,
            &run,
            host.submit(request, wait.unwrap_or_default()),
            StatusCode::OK,
        )
    })
    .await
}

/// The answer to a request that may settle the run within `?wait`.
fn settled_or_going(
    host: &Host,
    run: &RunId,
    outcome: Result<Accepted, RuntimeError>,
    settled: StatusCode,
) -> Result<Response, Problem> {
    match outcome? {
        Accepted::Settled(result) => Ok(run_response(settled, &result)),
        Accepted::Going => Ok(run_response(
            StatusCode::ACCEPTED,
            &current(host.store(), run)?,
        )),
    }
}

/// `POST /v1/runs/{id}/cancel`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Why (recorded with the run).
    #[serde(default)]
    reason: Option<String>,
}

/// Cancel a running or suspended run (`weft cancel`).
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/cancel",
    params(("id" = String, Path, description = "The run id")),
    request_body = CancelBody,
    responses(
        (status = 200, body = RunJson),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn cancel_run(
    State(server): Shared,
    Id(id): Id,
    Body(body): Body<CancelBody>,
) -> Result<Response, Problem> {
    let run = run_id(&id)?;
    let host = Arc::clone(&server.host);
    blocking(move || {
        let meta = engine::run_meta(host.store(), &run)?;
        let workflow = host.registered_run(&meta)?;
        let result = host.call(Request::Cancel {
            workflow,
            run,
            reason: body.reason,
        })?;
        Ok(run_response(StatusCode::OK, &result))
    })
    .await
}

/// `POST /v1/runs/{id}/rerun`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerunBody {
    /// The address to execute from; the old run's results before it are
    /// taken over.
    from: String,
    /// A new workflow input (the old run's when absent).
    #[serde(default)]
    input: Option<Value>,
    /// The new run's id (a UUID when absent).
    #[serde(default)]
    run_id: Option<String>,
}

/// Time travel: a new run from an address of an old one (`weft rerun`).
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/rerun",
    params(("id" = String, Path, description = "The old run's id"), WaitQuery),
    request_body = RerunBody,
    responses(
        (status = 201, description = "The new run (settled, with `?wait`)", body = RunJson),
        (status = 202, description = "The new run; not settled within `?wait`", body = RunJson),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn rerun_run(
    State(server): Shared,
    Id(id): Id,
    Params(query): Params<WaitQuery>,
    Body(body): Body<RerunBody>,
) -> Result<Response, Problem> {
    let old = run_id(&id)?;
    let wait = query.duration()?;
    let from = StepPath::parse(&body.from)
        .map_err(|e| Problem::invalid(format!("from: {e}")).with("pointer", "/from"))?;
    let new = match &body.run_id {
        Some(id) => run_id(id).map_err(|p| p.with("pointer", "/run_id"))?,
        None => run_id(&uuid::Uuid::new_v4().to_string())?,
    };
    let host = Arc::clone(&server.host);
    blocking(move || {
        let (meta, events) = engine::load_run(host.store(), &old)?;
        let workflow = host.registered_run(&meta)?;
        let first = weft_core::rerun(
            &workflow.workflow,
            &events,
            new.clone(),
            from,
            body.input,
            SystemClock.now(),
        )
        .map_err(|e| Problem::invalid(e.to_string()))?;
        let request = Request::StartWith {
            workflow,
            run: new.clone(),
            events: first,
        };
        let outcome = host.submit(request, wait.unwrap_or_default());
        match outcome {
            Ok(Accepted::Going) if wait.is_none() => Ok(run_response(
                StatusCode::CREATED,
                &current(host.store(), &new)?,
            )),
            other => settled_or_going(&host, &new, other, StatusCode::CREATED),
        }
    })
    .await
}

/// A deployed version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Version {
    /// The workflow lock's digest (SHA-256).
    digest: String,
    /// When it was first deployed (RFC 3339).
    deployed_at: String,
}

/// A deploy's answer, and an entry of the workflow list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowJson {
    /// The workflow id (the manifest's `id`).
    id: String,
    /// The newest (or, for a deploy, the deployed) version's digest.
    digest: String,
    /// When that version was first deployed (RFC 3339).
    deployed_at: String,
    /// Whether the deploy added a new version (deploys only).
    #[serde(skip_serializing_if = "Option::is_none")]
    new: Option<bool>,
    /// How many versions are deployed (lists only).
    #[serde(skip_serializing_if = "Option::is_none")]
    versions: Option<usize>,
}

/// Deploy a workflow bundle (`weft deploy`): a tar archive whose first
/// entry is `weft-bundle.json` naming the manifest, then the manifest and
/// every file it needs. Deploying the same bytes again changes nothing.
#[utoipa::path(
    post,
    path = "/v1/workflows",
    request_body(content(
        (Vec<u8> = "application/x-tar"),
        (Vec<u8> = "application/octet-stream"),
    )),
    responses(
        (status = 201, description = "A new version", body = WorkflowJson),
        (status = 200, description = "This version was deployed already", body = WorkflowJson),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn deploy(State(server): Shared, request: HttpRequest) -> Result<Response, Problem> {
    refuse_announced_over(
        &request,
        server.max_bundle,
        "the bundle (--max-bundle-size)",
    )?;
    let body: Result<Bytes, BytesRejection> = Bytes::from_request(request, &()).await;
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                Kind::PayloadTooLarge,
                "the bundle is larger than this server takes (--max-bundle-size)",
            )
        } else {
            Problem::invalid(rejection.body_text())
        }
    })?;
    let host = Arc::clone(&server.host);
    blocking(move || {
        let deployed = host.deploy(&bytes)?;
        let status = if deployed.new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let d = deployed.deployment;
        Ok((
            status,
            Json(WorkflowJson {
                id: d.workflow.to_string(),
                digest: d.digest,
                deployed_at: d.at.rfc3339(),
                new: Some(deployed.new),
                versions: None,
            }),
        )
            .into_response())
    })
    .await
}

/// The workflows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowsPage {
    /// Each deployed workflow with its newest version, most recently
    /// deployed first.
    workflows: Vec<WorkflowJson>,
}

/// List deployed workflows.
#[utoipa::path(
    get,
    path = "/v1/workflows",
    responses(
        (status = 200, body = WorkflowsPage),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_workflows(State(server): Shared) -> Result<Json<WorkflowsPage>, Problem> {
    let host = Arc::clone(&server.host);
    blocking(move || {
        let mut workflows: Vec<WorkflowJson> = Vec::new();
        for d in host.store().deployments(None)? {
            match workflows.iter_mut().find(|w| w.id == d.workflow.as_str()) {
                Some(w) => *w.versions.get_or_insert(0) += 1,
                None => workflows.push(WorkflowJson {
                    id: d.workflow.to_string(),
                    digest: d.digest,
                    deployed_at: d.at.rfc3339(),
                    new: None,
                    versions: Some(1),
                }),
            }
        }
        Ok(Json(WorkflowsPage { workflows }))
    })
    .await
}

/// A workflow's versions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowVersions {
    /// The workflow id.
    id: String,
    /// Its versions, newest first.
    versions: Vec<Version>,
}

/// A deployed workflow's versions, newest first.
#[utoipa::path(
    get,
    path = "/v1/workflows/{id}",
    params(("id" = String, Path, description = "The workflow id")),
    responses(
        (status = 200, body = WorkflowVersions),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_workflow(
    State(server): Shared,
    Id(id): Id,
) -> Result<Json<WorkflowVersions>, Problem> {
    let workflow = StepId::new(&id).map_err(|e| Problem::invalid(format!("workflow id: {e}")))?;
    let host = Arc::clone(&server.host);
    blocking(move || {
        let versions: Vec<Version> = host
            .store()
            .deployments(Some(&workflow))?
            .into_iter()
            .map(|d| Version {
                digest: d.digest,
                deployed_at: d.at.rfc3339(),
            })
            .collect();
        if versions.is_empty() {
            return Err(Problem::not_found(format!(
                "no workflow `{workflow}` is deployed"
            )));
        }
        Ok(Json(WorkflowVersions {
            id: workflow.to_string(),
            versions,
        }))
    })
    .await
}

/// Prometheus metrics (OpenMetrics text): runs by status, runs waiting to
/// be claimed, events committed by type, commit latency, step attempt
/// latency by outcome, attempts in flight, lease grants by kind.
#[utoipa::path(
    get,
    path = "/metrics",
    responses(
        (status = 200, body = String, content_type = "application/openmetrics-text"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn metrics(State(server): Shared) -> Result<Response, Problem> {
    let host = Arc::clone(&server.host);
    let meter = Arc::clone(&server.meter);
    let text = blocking(move || Ok(meter.render(host.store(), SystemClock.now()))).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, body = Value)))]
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: start-up recovery is done.
#[utoipa::path(
    get,
    path = "/readyz",
    security(()),
    responses(
        (status = 200, body = Value),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn readyz(State(server): Shared) -> Result<Json<Value>, Problem> {
    if *server.shutdown.borrow() {
        return Err(Problem::new(
            Kind::Unavailable,
            "the server is shutting down",
        ));
    }
    if server.host.is_ready() {
        Ok(Json(json!({ "status": "ready" })))
    } else {
        Err(Problem::new(
            Kind::Unavailable,
            "start-up recovery is still running",
        ))
    }
}
