//! Docker's names, images and labels, from the Docker Engine API on its unix socket: a full
//! list on every (re)connect, then the container event stream. Debian 12's docker.io is 20.10
//! (API 1.41), which refuses requests versioned above that: the client negotiates the version
//! down. (bollard 0.21.1 in fact drops the version from its request paths, and dockerd
//! answers those at its own version; negotiating keeps this working if bollard sends it.)
//!
//! Docker flushes the `/events` response before it subscribes, so a stream opened just before
//! the list could still miss an event that happened in between: the stream asks to replay from
//! a second before the list (`since`; dockerd keeps its recent events in memory). Applying an
//! event means asking Docker for the container's current state, so a replayed one is harmless.
use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bollard::{
    Docker,
    errors::Error as BollardError,
    models::{ContainerInspectResponse, ContainerSummary, EventMessage},
    query_parameters::{EventsOptions, ListContainersOptions},
};
use futures_util::{FutureExt as _, StreamExt as _};

use super::metadata::{ContainerMeta, MetadataStore, Source, SourceState};
use crate::error_chain::{ErrorChain, IfDenied};

/// First wait before reconnecting after a failure; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a socket that was never there is looked for (one `stat`): a node agent may
/// start before dockerd.
const ABSENT_POLL: Duration = Duration::from_secs(5);
/// Inspections in flight at once while listing.
const INSPECT_CONCURRENCY: usize = 8;
/// Events taken from the stream before they are applied: a burst (`docker run` sends create
/// and start) costs one inspection per container, not one per event.
const MAX_BATCH: usize = 256;
/// How far back the event stream replays, to cover the gap before dockerd subscribed it
/// (the clock is the host's for both; a second covers the `since` rounding too).
const REPLAY: Duration = Duration::from_secs(1);
/// The container actions that change what is stored. `die` and `update` change none of a
/// container's name, image, labels, creation or start time, so they are not asked for.
const ACTIONS: [&str; 4] = ["create", "start", "rename", "destroy"];

/// Why a connection to Docker failed or ended. Messages leave the cause to `source()`.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The socket path could not be stat'ed.
    #[error("cannot stat the Docker socket {socket}")]
    Stat {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// It was there before and is gone (dockerd removes it when it stops cleanly).
    #[error("the Docker socket {socket} is gone")]
    Vanished { socket: PathBuf },
    /// The client could not be set up (or the connecting task failed).
    #[error("cannot set up a Docker client on {socket}")]
    Client {
        socket: PathBuf,
        #[source]
        source: BollardError,
    },
    /// `GET /version` failed: nothing answers on the socket, or not Docker.
    #[error(
        "Docker on {socket} does not answer GET /version{}",
        IfDenied(.source, "connecting needs write permission on the socket: add the daemon's user to its group, docker")
    )]
    Negotiate {
        socket: PathBuf,
        #[source]
        source: BollardError,
    },
    /// `GET /containers/json` failed.
    #[error("listing Docker's containers failed")]
    List {
        #[source]
        source: BollardError,
    },
    /// Inspecting a container failed other than by Docker's own answer.
    #[error("inspecting Docker container {id} failed")]
    Inspect {
        id: String,
        #[source]
        source: BollardError,
    },
    /// The event stream broke.
    #[error("Docker's event stream failed")]
    Events {
        #[source]
        source: BollardError,
    },
    /// The event stream ended (dockerd closed it: it stopped).
    #[error("Docker's event stream ended")]
    EventsEnded,
}

/// Why a Docker timestamp was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("{text:?} is not an RFC 3339 time")]
    Malformed { text: String },
}

/// Keeps `store` current from the Docker Engine API at `socket` until aborted. A request
/// whose response headers take longer than `timeout` fails the connection (bollard applies
/// the timeout to the headers only, so the event stream itself can stay idle for as long as
/// it likes); a Docker that accepts and never answers is then down, and retried.
pub async fn watch(store: Arc<MetadataStore>, socket: PathBuf, timeout: Duration) {
    let Some(address) = socket.to_str().map(str::to_owned) else {
        // bollard takes the socket path as a string; no retry will change that.
        let reason = format!("socket path {} is not UTF-8", socket.display());
        tracing::warn!(%reason, "Docker metadata off");
        store.set_state(Source::Docker, SourceState::Absent { reason });
        return std::future::pending().await;
    };
    let mut watcher = Watcher {
        store,
        socket,
        address,
        seen: false,
        outage: Outage::default(),
        backoff: Backoff::default(),
        timeout,
    };
    watcher.run().await;
}

struct Watcher {
    store: Arc<MetadataStore>,
    socket: PathBuf,
    address: String,
    /// Whether the socket was ever there: a socket missing after that is an outage (dockerd
    /// stopping removes it), not a node without Docker.
    seen: bool,
    outage: Outage,
    backoff: Backoff,
    /// Longest wait for a response's headers.
    timeout: Duration,
}

impl Watcher {
    async fn run(&mut self) -> ! {
        loop {
            let Err(error) = self.attempt().await else {
                // The socket is absent: look again later, cheaply.
                tokio::time::sleep(ABSENT_POLL).await;
                continue;
            };
            let reason = ErrorChain(&error).to_string();
            self.store.set_state(
                Source::Docker,
                SourceState::Down {
                    reason: reason.clone(),
                },
            );
            if self.outage.failed() {
                tracing::warn!(
                    socket = %self.socket.display(),
                    error = %reason,
                    "Docker is down: retrying; the names, images and labels already known are kept"
                );
            } else {
                tracing::debug!(error = %reason, "Docker still down");
            }
            tokio::time::sleep(self.backoff.next_wait()).await;
        }
    }

    /// One try: `Ok` when the socket is absent (never seen), else the error that ended the
    /// connection (a connection that holds never returns).
    async fn attempt(&mut self) -> Result<(), DockerError> {
        match tokio::fs::metadata(&self.socket).await {
            Ok(_) => self.seen = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.seen {
                    return Err(DockerError::Vanished {
                        socket: self.socket.clone(),
                    });
                }
                let reason = format!("no Docker socket at {}", self.socket.display());
                if self.outage.absent() {
                    tracing::info!(
                        socket = %self.socket.display(),
                        "no Docker socket: Docker metadata off until it appears"
                    );
                }
                self.store
                    .set_state(Source::Docker, SourceState::Absent { reason });
                return Ok(());
            }
            Err(source) => {
                return Err(DockerError::Stat {
                    socket: self.socket.clone(),
                    source,
                });
            }
        }
        let Err(e) = self.session().await;
        Err(e)
    }

    /// Connects, lists and follows the events until something fails.
    async fn session(&mut self) -> Result<Infallible, DockerError> {
        let docker = self.connect().await?;
        let options = EventsOptions {
            since: Some(replay_since(SystemTime::now())),
            until: None,
            filters: Some(event_filters()),
        };
        let mut events = std::pin::pin!(docker.events(Some(options)));
        // The stream is polled while the list is made, so its request goes out first and
        // what arrives meanwhile waits here.
        let mut pending = Vec::new();
        let entries = {
            let mut listing = std::pin::pin!(list(&docker));
            loop {
                tokio::select! {
                    biased;
                    event = events.next() => pending.push(next_event(event)?),
                    listed = &mut listing => break listed?,
                }
            }
        };
        let count = entries.len();
        self.store.replace_all(Source::Docker, entries);
        self.store.set_state(Source::Docker, SourceState::Connected);
        self.backoff.reset();
        if self.outage.connected() {
            tracing::info!(socket = %self.socket.display(), containers = count, "Docker is back");
        } else {
            tracing::info!(
                socket = %self.socket.display(),
                api_version = %docker.client_version(),
                containers = count,
                "connected to Docker"
            );
        }
        loop {
            if pending.is_empty() {
                pending.push(next_event(events.next().await)?);
            }
            while pending.len() < MAX_BATCH {
                match events.next().now_or_never() {
                    Some(event) => pending.push(next_event(event)?),
                    None => break,
                }
            }
            for (id, change) in coalesce(pending.drain(..)) {
                self.apply(&docker, id, change).await?;
            }
        }
    }

    async fn connect(&self) -> Result<Docker, DockerError> {
        let address = self.address.clone();
        let timeout_secs = self.timeout.as_secs().max(1);
        // bollard checks that the path exists with a blocking `stat`.
        let client = tokio::task::spawn_blocking(move || {
            Docker::connect_with_unix(&address, timeout_secs, bollard::API_DEFAULT_VERSION)
        })
        .await
        .unwrap_or_else(|e| Err(BollardError::IOError { err: e.into() }))
        .map_err(|source| DockerError::Client {
            socket: self.socket.clone(),
            source,
        })?;
        client
            .negotiate_version()
            .await
            .map_err(|source| DockerError::Negotiate {
                socket: self.socket.clone(),
                source,
            })
    }

    async fn apply(&self, docker: &Docker, id: String, change: Change) -> Result<(), DockerError> {
        match change {
            Change::Remove => self.store.remove(Source::Docker, &id),
            Change::Refresh => match inspect(docker, &id).await? {
                Inspected::Found(meta) => self.store.upsert(Source::Docker, id, meta),
                Inspected::Gone => self.store.remove(Source::Docker, &id),
                Inspected::Refused(e) => {
                    // One container Docker will not describe: keep what is known of it.
                    tracing::warn!(
                        container = %id,
                        error = %ErrorChain(&e),
                        "Docker did not inspect a container"
                    );
                }
            },
        }
        Ok(())
    }
}

/// What an event asks of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub enum Change {
    /// Ask Docker for the container's current state.
    Refresh,
    /// It was destroyed.
    Remove,
}

/// The change a container event's action asks for; `None` for actions that change nothing
/// stored.
fn change_for(action: &str) -> Option<Change> {
    match action {
        "create" | "start" | "rename" => Some(Change::Refresh),
        "destroy" => Some(Change::Remove),
        _ => None,
    }
}

/// One change per container for a batch of events: the last event decides, except that
/// nothing follows a destroy (ids are never reused).
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub fn coalesce(events: impl IntoIterator<Item = EventMessage>) -> HashMap<String, Change> {
    let mut changes = HashMap::new();
    for event in events {
        let Some(change) = event.action.as_deref().and_then(change_for) else {
            continue;
        };
        let Some(id) = event.actor.and_then(|a| a.id).filter(|id| !id.is_empty()) else {
            continue;
        };
        let slot = changes.entry(id).or_insert(change);
        if *slot != Change::Remove {
            *slot = change;
        }
    }
    changes
}

fn event_filters() -> HashMap<String, Vec<String>> {
    HashMap::from([
        ("type".to_owned(), vec!["container".to_owned()]),
        (
            "event".to_owned(),
            ACTIONS.iter().map(|&a| a.to_owned()).collect(),
        ),
    ])
}

/// The `since` of the event stream: [`REPLAY`] before `now`, as Docker's
/// `seconds.nanoseconds`.
fn replay_since(now: SystemTime) -> String {
    let at = now
        .checked_sub(REPLAY)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    format!("{}.{:09}", at.as_secs(), at.subsec_nanos())
}

fn next_event(
    event: Option<Result<EventMessage, BollardError>>,
) -> Result<EventMessage, DockerError> {
    match event {
        Some(Ok(event)) => Ok(event),
        Some(Err(source)) => Err(DockerError::Events { source }),
        None => Err(DockerError::EventsEnded),
    }
}

/// Every container, each inspected (the list lacks the start time, and gives an image id
/// instead of the reference the user gave once that reference moved to another image).
async fn list(docker: &Docker) -> Result<Vec<(String, ContainerMeta)>, DockerError> {
    let options = ListContainersOptions {
        all: true,
        ..ListContainersOptions::default()
    };
    let summaries = docker
        .list_containers(Some(options))
        .await
        .map_err(|source| DockerError::List { source })?;
    let described: Vec<Result<Option<(String, ContainerMeta)>, DockerError>> =
        futures_util::stream::iter(summaries)
            .map(|summary| async move {
                let Some(id) = summary.id.clone() else {
                    return Ok(None);
                };
                let meta = match inspect(docker, &id).await? {
                    Inspected::Found(meta) => meta,
                    Inspected::Gone => return Ok(None),
                    Inspected::Refused(e) => {
                        tracing::warn!(
                            container = %id,
                            error = %ErrorChain(&e),
                            "Docker did not inspect a container: using its list entry"
                        );
                        meta_from_summary(summary)
                    }
                };
                Ok(Some((id, meta)))
            })
            .buffer_unordered(INSPECT_CONCURRENCY)
            .collect()
            .await;
    described
        .into_iter()
        .filter_map(Result::transpose)
        .collect()
}

/// What inspecting one container told.
enum Inspected {
    Found(ContainerMeta),
    /// 404: it is gone already.
    Gone,
    /// Docker answered with another error, about this container only.
    Refused(BollardError),
}

async fn inspect(docker: &Docker, id: &str) -> Result<Inspected, DockerError> {
    match docker.inspect_container(id, None).await {
        Ok(response) => Ok(Inspected::Found(meta_from_inspect(response))),
        Err(BollardError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(Inspected::Gone),
        Err(e @ BollardError::DockerResponseServerError { .. }) => Ok(Inspected::Refused(e)),
        Err(source) => Err(DockerError::Inspect {
            id: id.to_owned(),
            source,
        }),
    }
}

/// A container as `GET /containers/{id}/json` describes it.
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub fn meta_from_inspect(response: ContainerInspectResponse) -> ContainerMeta {
    let config = response.config.unwrap_or_default();
    let id = response.id.as_deref().unwrap_or("?");
    ContainerMeta {
        name: response.name.as_deref().and_then(docker_name),
        image: config.image.filter(|i| !i.is_empty()),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        runtime_namespace: None,
        flavor: crate::provider::Flavor::Default,
        created: response
            .created
            .as_deref()
            .and_then(|t| time_field(t, "Created", id)),
        started: response
            .state
            .and_then(|s| s.started_at)
            .as_deref()
            .and_then(|t| time_field(t, "State.StartedAt", id)),
        pod: None,
    }
}

/// A container as `GET /containers/json` lists it, when it cannot be inspected: no start
/// time, and the image as listed.
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub fn meta_from_summary(summary: ContainerSummary) -> ContainerMeta {
    ContainerMeta {
        name: summary
            .names
            .unwrap_or_default()
            .iter()
            .find_map(|n| docker_name(n)),
        image: summary.image.filter(|i| !i.is_empty()),
        labels: summary
            .labels
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        runtime_namespace: None,
        flavor: crate::provider::Flavor::Default,
        created: summary
            .created
            .and_then(|s| u64::try_from(s).ok())
            .map(|s| UNIX_EPOCH + Duration::from_secs(s)),
        started: None,
        pod: None,
    }
}

/// Docker's `/name` without its slash; `None` when empty.
fn docker_name(raw: &str) -> Option<String> {
    let name = raw.strip_prefix('/').unwrap_or(raw);
    (!name.is_empty()).then(|| name.to_owned())
}

fn time_field(text: &str, field: &str, id: &str) -> Option<SystemTime> {
    parse_docker_time(text).unwrap_or_else(|e| {
        tracing::debug!(container = %id, field, error = %e, "unreadable time from Docker");
        None
    })
}

/// Go's zero `time.Time`, `0001-01-01T00:00:00Z`, in seconds from the Unix epoch: what
/// Docker writes for "never" (the start time of a container never started).
const GO_ZERO_TIME_SECS: i64 = -62_135_596_800;

/// An RFC 3339 time as Docker writes them (`2024-05-06T07:08:09.123456789Z`; Go trims the
/// fraction's trailing zeros); `None` for Go's zero time or an empty string.
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub fn parse_docker_time(text: &str) -> Result<Option<SystemTime>, TimeError> {
    if text.is_empty() {
        return Ok(None);
    }
    let malformed = || TimeError::Malformed {
        text: text.to_owned(),
    };
    let (secs, nanos) = parse_rfc3339(text).ok_or_else(malformed)?;
    if secs == GO_ZERO_TIME_SECS && nanos == 0 {
        return Ok(None);
    }
    let time = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs.unsigned_abs(), nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
    };
    time.map(Some).ok_or_else(malformed)
}

/// Seconds from the Unix epoch and nanoseconds of `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn parse_rfc3339(text: &str) -> Option<(i64, u32)> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        part.iter()
            .try_fold(0i64, |n, d| Some(n * 10 + i64::from(d - b'0')))
    };
    let expect = |at: usize, options: &[u8]| b.get(at).is_some_and(|c| options.contains(c));
    if !(expect(4, b"-")
        && expect(7, b"-")
        && expect(10, b"Tt ")
        && expect(13, b":")
        && expect(16, b":"))
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut at = 19;
    let mut nanos: u32 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let fraction = &b[start..at];
        if fraction.is_empty() {
            return None;
        }
        // Nanoseconds: the first nine digits, padded.
        for i in 0..9 {
            let digit = fraction.get(i).map_or(0, |d| u32::from(d - b'0'));
            nanos = nanos * 10 + digit;
        }
    }
    let offset_secs = match b.get(at)? {
        b'Z' | b'z' if at + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == b.len() && b[at + 3] == b':' => {
            let (h, m) = (digits(at + 1..at + 3)?, digits(at + 4..at + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let offset = h * 3600 + m * 60;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some((secs, nanos))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Which log lines a run of failures and connections deserves: one warning per outage, one
/// note that the socket is absent.
#[derive(Debug, Default)]
pub(super) struct Outage {
    /// A failure was logged and no connection followed yet.
    down: bool,
    /// The absent socket was logged.
    absent_noted: bool,
}

impl Outage {
    /// A failure: whether it starts an outage (log it).
    pub(super) fn failed(&mut self) -> bool {
        !std::mem::replace(&mut self.down, true)
    }

    /// The socket is absent: whether that is news (log it).
    pub(super) fn absent(&mut self) -> bool {
        !std::mem::replace(&mut self.absent_noted, true)
    }

    /// Connected: whether this ends an outage ("back") rather than being the first try.
    pub(super) fn connected(&mut self) -> bool {
        std::mem::replace(&mut self.down, false)
    }
}

/// Waits between reconnects: from [`FIRST_BACKOFF`], doubling, capped at [`MAX_BACKOFF`].
#[derive(Debug)]
pub(super) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    pub(super) fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        wait
    }

    pub(super) fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn reads_docker_times() {
        assert_eq!(
            parse_docker_time("2024-05-06T07:08:09.123456789Z"),
            Ok(Some(at(1_714_979_289, 123_456_789)))
        );
        // Go trims trailing zeros of the fraction; a longer one is cut to nanoseconds.
        assert_eq!(
            parse_docker_time("2024-05-06T07:08:09.5Z"),
            Ok(Some(at(1_714_979_289, 500_000_000)))
        );
        assert_eq!(
            parse_docker_time("2024-05-06T07:08:09.1234567891Z"),
            Ok(Some(at(1_714_979_289, 123_456_789)))
        );
        assert_eq!(
            parse_docker_time("2024-05-06T07:08:09Z"),
            Ok(Some(at(1_714_979_289, 0)))
        );
        assert_eq!(
            parse_docker_time("2024-05-06T09:38:09+02:30"),
            Ok(Some(at(1_714_979_289, 0)))
        );
        assert_eq!(
            parse_docker_time("2024-05-06T05:08:09-02:00"),
            Ok(Some(at(1_714_979_289, 0)))
        );
        assert_eq!(
            parse_docker_time("1970-01-01T00:00:00Z"),
            Ok(Some(UNIX_EPOCH))
        );
        assert_eq!(
            parse_docker_time("2000-02-29T00:00:00Z"),
            Ok(Some(at(951_782_400, 0)))
        );
    }

    #[test]
    fn go_zero_time_and_empty_are_never() {
        assert_eq!(parse_docker_time("0001-01-01T00:00:00Z"), Ok(None));
        assert_eq!(parse_docker_time(""), Ok(None));
        // A real time before the epoch is a time, not "never".
        assert_eq!(
            parse_docker_time("1969-12-31T23:59:59Z"),
            Ok(Some(UNIX_EPOCH - Duration::from_secs(1)))
        );
    }

    #[test]
    fn rejects_what_is_not_rfc_3339() {
        for bad in [
            "yesterday",
            "2024-05-06",
            "2024-05-06T07:08:09",
            "2024-13-06T07:08:09Z",
            "2023-02-29T07:08:09Z",
            "2024-05-06T24:08:09Z",
            "2024-05-06T07:08:09.Z",
            "2024-05-06T07:08:09+0200",
            "2024-05-06T07:08:09Zjunk",
            "2024-05-06T07:08:0xZ",
        ] {
            assert_eq!(
                parse_docker_time(bad),
                Err(TimeError::Malformed { text: bad.into() }),
                "{bad}"
            );
        }
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
        assert_eq!(days_from_civil(1, 1, 1) * 86_400, GO_ZERO_TIME_SECS);
    }

    /// A Docker 20.10 inspect answer, trimmed to what is read and a few fields around it.
    const INSPECT: &str = r#"{
        "Id": "3f4b6a2e0c9d8b7a6f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c3b2a19087",
        "Created": "2024-05-06T07:08:09.123456789Z",
        "Path": "sleep",
        "Args": ["86400"],
        "State": {
            "Status": "running", "Running": true, "Paused": false, "Restarting": false,
            "OOMKilled": false, "Dead": false, "Pid": 4242, "ExitCode": 0, "Error": "",
            "StartedAt": "2024-05-06T07:08:10.5Z", "FinishedAt": "0001-01-01T00:00:00Z"
        },
        "Image": "sha256:0e2f9b1c7a3d5e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071",
        "Name": "/web-1",
        "Config": {
            "Hostname": "3f4b6a2e0c9d",
            "Image": "collector-test-busybox:latest",
            "Labels": {"app": "web", "tier": "front"}
        }
    }"#;

    #[test]
    fn an_inspect_answer_gives_name_image_labels_and_times() {
        let response: ContainerInspectResponse = serde_json::from_str(INSPECT).unwrap();
        let meta = meta_from_inspect(response);
        assert_eq!(
            meta,
            ContainerMeta {
                name: Some("web-1".into()),
                image: Some("collector-test-busybox:latest".into()),
                labels: BTreeMap::from([
                    ("app".into(), "web".into()),
                    ("tier".into(), "front".into()),
                ]),
                runtime_namespace: None,
                flavor: crate::provider::Flavor::Default,
                created: Some(at(1_714_979_289, 123_456_789)),
                started: Some(at(1_714_979_290, 500_000_000)),
                pod: None,
            }
        );
    }

    #[test]
    fn a_created_container_has_no_start_time() {
        let mut response: ContainerInspectResponse = serde_json::from_str(INSPECT).unwrap();
        response.state.as_mut().unwrap().started_at = Some("0001-01-01T00:00:00Z".into());
        response.config.as_mut().unwrap().labels = None;
        response.created = Some("garbage".into());
        let meta = meta_from_inspect(response);
        assert_eq!(meta.started, None);
        assert_eq!(meta.created, None);
        assert!(meta.labels.is_empty());
        assert_eq!(meta.name.as_deref(), Some("web-1"));
    }

    #[test]
    fn a_list_entry_gives_name_image_labels_and_creation() {
        let summary: ContainerSummary = serde_json::from_str(
            r#"{"Id": "abc", "Names": ["/db"], "Image": "postgres:16", "Created": 1714979289,
                "Labels": {"app": "db"}, "State": "running"}"#,
        )
        .unwrap();
        let meta = meta_from_summary(summary);
        assert_eq!(meta.name.as_deref(), Some("db"));
        assert_eq!(meta.image.as_deref(), Some("postgres:16"));
        assert_eq!(meta.labels.get("app").map(String::as_str), Some("db"));
        assert_eq!(meta.created, Some(at(1_714_979_289, 0)));
        assert_eq!(meta.started, None);
    }

    fn event(action: &str, id: &str) -> EventMessage {
        serde_json::from_value(serde_json::json!({
            "Type": "container", "Action": action,
            "Actor": {"ID": id, "Attributes": {"name": "x"}}
        }))
        .unwrap()
    }

    #[test]
    fn a_burst_of_events_is_one_change_per_container() {
        let changes = coalesce([
            event("create", "a"),
            event("start", "a"),
            event("rename", "a"),
            event("create", "b"),
            event("destroy", "b"),
            event("start", "b"),
            event("destroy", "c"),
            event("die", "d"),
            event("start", ""),
        ]);
        assert_eq!(
            changes,
            HashMap::from([
                ("a".to_owned(), Change::Refresh),
                ("b".to_owned(), Change::Remove),
                ("c".to_owned(), Change::Remove),
            ])
        );
    }

    #[test]
    fn the_stream_asks_only_for_container_events_that_change_something() {
        let filters = event_filters();
        assert_eq!(filters["type"], ["container"]);
        for action in &filters["event"] {
            assert!(change_for(action).is_some(), "{action}");
        }
        assert_eq!(change_for("die"), None);
        assert_eq!(change_for("exec_start: sh"), None);
    }

    #[test]
    fn replay_starts_a_second_back() {
        assert_eq!(replay_since(at(1_714_979_289, 5)), "1714979288.000000005");
        assert_eq!(replay_since(at(0, 0)), "0.000000000");
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut backoff = Backoff::default();
        let waits: Vec<u64> = (0..6)
            .map(|_| u64::try_from(backoff.next_wait().as_millis()).unwrap())
            .collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next_wait(), FIRST_BACKOFF);
    }

    #[test]
    fn an_outage_is_logged_once_and_its_end_once() {
        let mut outage = Outage::default();
        assert!(outage.absent());
        assert!(!outage.absent());
        assert!(!outage.connected(), "the first connection is no comeback");
        assert!(outage.failed());
        assert!(!outage.failed());
        assert!(!outage.failed());
        assert!(outage.connected());
        assert!(!outage.connected());
        assert!(outage.failed(), "a new outage is logged again");
    }

    #[test]
    fn chains_say_each_cause_once() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = DockerError::Stat {
            socket: "/run/docker.sock".into(),
            source: inner,
        };
        assert_eq!(
            ErrorChain(&error).to_string(),
            "cannot stat the Docker socket /run/docker.sock: refused"
        );
    }

    async fn state_becomes(
        store: &MetadataStore,
        want: impl Fn(&SourceState) -> bool,
    ) -> SourceState {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let state = store.state(Source::Docker);
            if want(&state) {
                return state;
            }
            assert!(tokio::time::Instant::now() < deadline, "still {state:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_missing_socket_is_absent_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MetadataStore::default());
        let task = tokio::spawn(watch(
            Arc::clone(&store),
            dir.path().join("docker.sock"),
            Duration::from_secs(30),
        ));
        let state = state_becomes(&store, |s| matches!(s, SourceState::Absent { .. })).await;
        task.abort();
        let SourceState::Absent { reason } = state else {
            unreachable!()
        };
        assert!(reason.contains("docker.sock"), "{reason}");
    }

    #[tokio::test]
    async fn a_socket_that_refuses_is_down_and_known_names_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        // Bound, then closed: the file stays and connecting to it is refused.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let store = Arc::new(MetadataStore::default());
        store.upsert(
            Source::Docker,
            "abc".into(),
            ContainerMeta {
                name: Some("kept".into()),
                ..ContainerMeta::default()
            },
        );
        let task = tokio::spawn(watch(Arc::clone(&store), path, Duration::from_secs(30)));
        let state = state_becomes(&store, |s| matches!(s, SourceState::Down { .. })).await;
        task.abort();
        let SourceState::Down { reason } = state else {
            unreachable!()
        };
        assert!(reason.contains("docker.sock"), "{reason}");
        assert_eq!(store.get("abc").unwrap().name.as_deref(), Some("kept"));
    }
}
