//! Which Podman API sockets the daemon watches, and what each one listed. Rootful Podman
//! serves `/run/podman/podman.sock`; each rootless user's own service (its own storage and
//! containers) serves `$XDG_RUNTIME_DIR/podman/podman.sock`, which is `/run/user/<uid>` in a
//! login session (`pam_systemd`, logind). As root, with no socket named, every
//! `/run/user/<uid>/podman/podman.sock` is looked for every few seconds: users log in and
//! start their service at any time, and `podman system service` removes its socket when it
//! stops (SIGTERM).
//!
//! A rootless user is trusted for their own containers only: a socket is taken only when it
//! and its runtime directory are owned by that uid (not symlinks), it is only connected to,
//! and what it lists goes to the least trusted source ([`Source::PodmanRootless`]), so no
//! user can rename another runtime's container by listing its id. A container listed by
//! two sockets takes the first socket's answer.
use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::fs::{FileTypeExt as _, MetadataExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use super::{
    metadata::{ContainerMeta, MetadataStore, Source, SourceState},
    podman, podman_pidns,
};
use crate::identity::procfs;

/// procfs, where main processes are checked (Podman's PIDs are the host's).
const PROC: &str = "/proc";

/// Where logind makes each user's runtime directory (`XDG_RUNTIME_DIR`).
pub const USER_RUNTIME_DIRS: &str = "/run/user";
/// A rootless service's socket below its user's runtime directory.
const ROOTLESS_SOCKET: &str = "podman/podman.sock";
/// How often `/run/user` is looked through for rootless sockets (a `stat` per user).
const RESCAN: Duration = Duration::from_secs(5);

/// The Podman sockets to watch, as `--podman-socket` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodmanSockets {
    /// Sockets named (or the default one): watched for the daemon's whole life, a missing one
    /// noted once and waited for. Their answers are trusted as the rootful one's.
    pub fixed: Vec<PathBuf>,
    /// The directory whose `<uid>/podman/podman.sock` are looked for, or `None`.
    pub discover_under: Option<PathBuf>,
}

/// One value of `--podman-socket`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketArg {
    /// `auto`: the rootful socket and, as root, every rootless one under `/run/user`; as
    /// another user, that user's own socket.
    Auto,
    /// `none`: do not ask Podman.
    Off,
    /// An absolute socket path.
    Path(PathBuf),
}

/// Why a `--podman-socket` value or list is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SocketArgError {
    /// Neither `auto`, `none` nor an absolute path.
    #[error("{raw:?} is not an absolute socket path, \"auto\" or \"none\"")]
    NotAbsolute { raw: String },
    /// `none` with other values.
    #[error("--podman-socket none cannot be combined with other sockets ({others})")]
    NoneWithOthers { others: String },
}

/// clap's parser for one `--podman-socket` value.
pub fn parse_socket_arg(raw: &str) -> Result<SocketArg, SocketArgError> {
    match raw.trim() {
        "auto" => Ok(SocketArg::Auto),
        "none" | "" => Ok(SocketArg::Off),
        path if Path::new(path).is_absolute() => Ok(SocketArg::Path(PathBuf::from(path))),
        _ => Err(SocketArgError::NotAbsolute {
            raw: raw.to_owned(),
        }),
    }
}

impl PodmanSockets {
    /// The sockets `args` name (none given: `auto`) for a daemon running as `euid` with
    /// `XDG_RUNTIME_DIR` set to `xdg_runtime_dir`.
    pub fn from_args(
        args: &[SocketArg],
        euid: u32,
        xdg_runtime_dir: Option<&Path>,
    ) -> Result<Self, SocketArgError> {
        if args.contains(&SocketArg::Off) {
            let others: Vec<String> = args
                .iter()
                .filter_map(|a| match a {
                    SocketArg::Off => None,
                    SocketArg::Auto => Some("auto".to_owned()),
                    SocketArg::Path(p) => Some(p.display().to_string()),
                })
                .collect();
            if others.is_empty() {
                return Ok(Self::default());
            }
            return Err(SocketArgError::NoneWithOthers {
                others: others.join(", "),
            });
        }
        let mut sockets = Self::default();
        let auto = [SocketArg::Auto];
        for arg in if args.is_empty() { &auto[..] } else { args } {
            let path = match arg {
                SocketArg::Auto => {
                    if euid == 0 {
                        sockets.discover_under = Some(PathBuf::from(USER_RUNTIME_DIRS));
                    }
                    podman::default_socket(euid, xdg_runtime_dir)
                }
                SocketArg::Path(path) => path.clone(),
                SocketArg::Off => unreachable!("handled above"),
            };
            if !sockets.fixed.contains(&path) {
                sockets.fixed.push(path);
            }
        }
        Ok(sockets)
    }

    /// Whether Podman is not asked at all.
    pub fn is_off(&self) -> bool {
        self.fixed.is_empty() && self.discover_under.is_none()
    }
}

/// The rootless sockets under `root` (`/run/user`): `<uid>/podman/podman.sock` where the
/// runtime directory and the socket are owned by `<uid>` and neither is a symlink. uid 0 is
/// left out: root's Podman is the rootful one.
pub fn discover(root: &Path) -> BTreeSet<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let uid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let dir = entry.path();
            let socket = dir.join(ROOTLESS_SOCKET);
            (uid != 0 && owned_by(&dir, &socket, uid)).then_some(socket)
        })
        .collect()
}

/// Whether `dir` is a directory and `socket` a unix socket, both owned by `uid` (a socket
/// reached through a symlinked `podman` folder is still owned by whoever made it, so a user
/// cannot point the daemon at another owner's socket).
fn owned_by(dir: &Path, socket: &Path, uid: u32) -> bool {
    let dir_ok = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid);
    dir_ok
        && std::fs::symlink_metadata(socket)
            .is_ok_and(|m| m.file_type().is_socket() && m.uid() == uid)
}

/// A container as one socket listed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub meta: ContainerMeta,
    /// Its state is `running`.
    pub running: bool,
    /// Its main process (`Pid` in the list), when running.
    pub pid: Option<u32>,
    /// That process's start time (ns since boot) when the list arrived: with the PID, the
    /// process's identity. Set by [`PodmanRegistry::replace`].
    pub start_time_ns: Option<u64>,
}

/// One socket: whether it is watched now, where it stands, and its last list.
#[derive(Debug)]
struct SocketView {
    source: Source,
    watched: bool,
    state: SourceState,
    containers: Vec<Listed>,
}

/// A running container of a watched or recently watched socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningContainer {
    pub id: String,
    pub pid: Option<u32>,
    /// The main process's start time when listed.
    pub start_time_ns: Option<u64>,
    /// The socket's owner uid when it is a rootless user's (its source is
    /// [`Source::PodmanRootless`]).
    pub rootless_uid: Option<u32>,
}

impl RunningContainer {
    /// Whether its main process is still the one listed (same PID and start time; a
    /// service that is down sends no event when a container stops) and, for a rootless
    /// user's container, in a user namespace that user owns (so a user lists no process of
    /// another's as a container of theirs).
    pub fn is_alive(&self) -> bool {
        let (Some(pid), Some(start)) = (self.pid, self.start_time_ns) else {
            return false;
        };
        let proc_root = Path::new(PROC);
        self.rootless_uid
            .is_none_or(|uid| podman_pidns::user_namespace_owner(proc_root, pid) == Some(uid))
            && procfs::start_time_ns(proc_root, pid) == Some(start)
    }
}

/// Every Podman socket's containers and state, kept in the metadata store under
/// [`Source::Podman`] (named sockets) and [`Source::PodmanRootless`] (found ones).
pub struct PodmanRegistry {
    store: Arc<MetadataStore>,
    sockets: Mutex<BTreeMap<PathBuf, SocketView>>,
}

impl PodmanRegistry {
    pub fn new(store: Arc<MetadataStore>) -> Self {
        Self {
            store,
            sockets: Mutex::new(BTreeMap::new()),
        }
    }

    fn sockets(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, SocketView>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts (or resumes) watching `socket`, whose answers go to `source`.
    pub fn register(&self, socket: &Path, source: Source) {
        let mut sockets = self.sockets();
        let view = sockets
            .entry(socket.to_owned())
            .or_insert_with(|| SocketView {
                source,
                watched: true,
                state: SourceState::Starting,
                containers: Vec::new(),
            });
        view.watched = true;
        view.state = SourceState::Starting;
        self.publish_state(&sockets, source);
    }

    /// Stops watching `socket` (it is gone); its containers keep their names until it
    /// returns or its user's runtime directory is removed. Its last state.
    pub fn unwatch(&self, socket: &Path) -> Option<SourceState> {
        let mut sockets = self.sockets();
        let view = sockets.get_mut(socket)?;
        view.watched = false;
        let (source, state) = (view.source, view.state.clone());
        self.publish_state(&sockets, source);
        Some(state)
    }

    /// Forgets the unwatched sockets whose runtime directory (the socket's grandparent) is
    /// gone: logind removes it when the user's last session ends.
    pub fn forget_departed(&self) {
        let mut sockets = self.sockets();
        let before = sockets.len();
        sockets.retain(|socket, view| {
            view.watched
                || socket
                    .parent()
                    .and_then(Path::parent)
                    .is_some_and(Path::exists)
        });
        if sockets.len() != before {
            self.publish_containers(&sockets, Source::PodmanRootless);
        }
    }

    /// Records where `socket` stands.
    pub fn set_state(&self, socket: &Path, state: SourceState) {
        let mut sockets = self.sockets();
        if let Some(view) = sockets.get_mut(socket) {
            view.state = state;
            let source = view.source;
            self.publish_state(&sockets, source);
        }
    }

    /// Replaces what `socket` listed, noting each main process's start time.
    pub fn replace(&self, socket: &Path, mut containers: Vec<Listed>) {
        for c in &mut containers {
            c.start_time_ns = c
                .pid
                .and_then(|pid| procfs::start_time_ns(Path::new(PROC), pid));
        }
        let mut sockets = self.sockets();
        if let Some(view) = sockets.get_mut(socket) {
            view.containers = containers;
            let source = view.source;
            self.publish_containers(&sockets, source);
        }
    }

    /// The socket that lists container `id`: a named socket's before a found one's.
    pub fn socket_of(&self, id: &str) -> Option<PathBuf> {
        let sockets = self.sockets();
        [Source::Podman, Source::PodmanRootless]
            .into_iter()
            .find_map(|source| {
                sockets
                    .iter()
                    .filter(|(_, v)| v.source == source)
                    .find(|(_, v)| v.containers.iter().any(|c| c.id == id))
                    .map(|(socket, _)| socket.clone())
            })
    }

    /// The rootless Podman container whose PID namespace process `pid` is in, when that is
    /// certain (see `podman_pidns`). Rootful Podman always gives its containers cgroups, which
    /// answer for them; rootless Podman cannot on cgroup v1.
    pub fn container_of_pid(&self, pid: u32) -> Option<String> {
        let mut running = self.running_of(&[Source::PodmanRootless]);
        // A user's claim is checked against the user: without its uid, no claim.
        running.retain(|c| c.rootless_uid.is_some());
        if running.is_empty() {
            return None;
        }
        podman_pidns::container_of(Path::new(PROC), pid, &running)
    }

    /// The running containers every socket listed last, each id once.
    pub fn running(&self) -> Vec<RunningContainer> {
        self.running_of(&[Source::Podman, Source::PodmanRootless])
    }

    /// As [`Self::running`], for the sockets of `sources` only.
    fn running_of(&self, sources: &[Source]) -> Vec<RunningContainer> {
        let sockets = self.sockets();
        let mut seen = BTreeSet::new();
        let mut running = Vec::new();
        for &source in sources {
            for (socket, view) in sockets.iter().filter(|(_, v)| v.source == source) {
                let owner = (source == Source::PodmanRootless)
                    .then(|| uid_of_runtime_dir(socket))
                    .flatten();
                for c in view.containers.iter().filter(|c| c.running) {
                    if seen.insert(c.id.clone()) {
                        running.push(RunningContainer {
                            id: c.id.clone(),
                            pid: c.pid,
                            start_time_ns: c.start_time_ns,
                            rootless_uid: owner,
                        });
                    }
                }
            }
        }
        running
    }

    /// The store's entries of `source`: every socket of it, the first socket's answer for
    /// an id listed twice.
    fn publish_containers(&self, sockets: &BTreeMap<PathBuf, SocketView>, source: Source) {
        let mut entries: BTreeMap<String, ContainerMeta> = BTreeMap::new();
        for view in sockets.values().filter(|v| v.source == source) {
            for c in &view.containers {
                entries
                    .entry(c.id.clone())
                    .or_insert_with(|| c.meta.clone());
            }
        }
        self.store.replace_all(source, entries);
    }

    /// `source`'s state from its watched sockets': connected when one is, else the first
    /// down one's, else absent.
    fn publish_state(&self, sockets: &BTreeMap<PathBuf, SocketView>, source: Source) {
        let watched: Vec<&SocketView> = sockets
            .values()
            .filter(|v| v.source == source && v.watched)
            .collect();
        let first =
            |f: fn(&SourceState) -> bool| watched.iter().map(|v| &v.state).find(|s| f(s)).cloned();
        let state = first(SourceState::is_up)
            .or_else(|| first(|s| matches!(s, SourceState::Down { .. })))
            .or_else(|| first(|s| matches!(s, SourceState::Starting)))
            .or_else(|| first(|s| matches!(s, SourceState::Absent { .. })))
            .unwrap_or_else(|| SourceState::Absent {
                reason: match source {
                    Source::PodmanRootless => {
                        format!("no rootless Podman socket under {USER_RUNTIME_DIRS}")
                    }
                    _ => "no Podman socket".to_owned(),
                },
            });
        self.store.set_state(source, state);
    }
}

/// The uid in `/run/user/<uid>/podman/podman.sock` (discovery took the socket only when
/// that uid owns it).
fn uid_of_runtime_dir(socket: &Path) -> Option<u32> {
    socket
        .parent()?
        .parent()?
        .file_name()?
        .to_str()?
        .parse()
        .ok()
}

/// Watches the named sockets, and every rootless one found under
/// [`PodmanSockets::discover_under`], until aborted (which stops every watcher).
pub async fn watch_all(registry: Arc<PodmanRegistry>, sockets: PodmanSockets, timeout: Duration) {
    let mut tasks = tokio::task::JoinSet::new();
    for socket in &sockets.fixed {
        registry.register(socket, Source::Podman);
        tasks.spawn(podman::watch(
            Arc::clone(&registry),
            socket.clone(),
            timeout,
        ));
    }
    if sockets.fixed.is_empty() {
        registry
            .store
            .set_state(Source::Podman, SourceState::Disabled);
    }
    let Some(root) = sockets.discover_under else {
        registry
            .store
            .set_state(Source::PodmanRootless, SourceState::Disabled);
        // The watchers run until this future is dropped, which aborts them.
        return std::future::pending().await;
    };
    registry.publish_state(&registry.sockets(), Source::PodmanRootless);
    let mut found: BTreeMap<PathBuf, tokio::task::AbortHandle> = BTreeMap::new();
    loop {
        let now = discover(&root);
        let now: BTreeSet<PathBuf> = now
            .into_iter()
            .filter(|s| !sockets.fixed.contains(s))
            .collect();
        found.retain(|socket, task| {
            if now.contains(socket) {
                return true;
            }
            task.abort();
            drop_socket(&registry, socket);
            false
        });
        for socket in now {
            if found.contains_key(&socket) {
                continue;
            }
            tracing::info!(socket = %socket.display(), "found a rootless Podman socket: watching it");
            registry.register(&socket, Source::PodmanRootless);
            let task = tasks.spawn(podman::watch(
                Arc::clone(&registry),
                socket.clone(),
                timeout,
            ));
            found.insert(socket, task);
        }
        registry.forget_departed();
        while tasks.try_join_next().is_some() {}
        tokio::time::sleep(RESCAN).await;
    }
}

/// A found socket that is gone: its service stopped. Its watcher already logged that when
/// it was connected; if it had not noticed yet, it is logged here, once.
fn drop_socket(registry: &PodmanRegistry, socket: &Path) {
    if let Some(SourceState::Connected) = registry.unwatch(socket) {
        tracing::warn!(
            socket = %socket.display(),
            "Podman is down: its socket is gone; the names, images and labels already known are kept"
        );
    } else {
        tracing::debug!(socket = %socket.display(), "rootless Podman socket gone");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    fn args(raw: &[&str]) -> Result<Vec<SocketArg>, SocketArgError> {
        raw.iter().map(|r| parse_socket_arg(r)).collect()
    }

    fn sockets(raw: &[&str], euid: u32) -> Result<PodmanSockets, SocketArgError> {
        PodmanSockets::from_args(&args(raw)?, euid, Some(Path::new("/run/user/1000")))
    }

    #[test]
    fn unset_or_auto_is_the_rootful_socket_and_discovery_for_root() {
        let want = PodmanSockets {
            fixed: vec![PathBuf::from("/run/podman/podman.sock")],
            discover_under: Some(PathBuf::from("/run/user")),
        };
        assert_eq!(sockets(&[], 0), Ok(want.clone()));
        assert_eq!(sockets(&["auto"], 0), Ok(want));
        // Another user has its own socket only: it cannot read other users' anyway.
        let own = PodmanSockets {
            fixed: vec![PathBuf::from("/run/user/1000/podman/podman.sock")],
            discover_under: None,
        };
        assert_eq!(sockets(&[], 1000), Ok(own));
    }

    #[test]
    fn a_list_is_watched_as_given_with_or_without_auto() {
        assert_eq!(
            sockets(&["/a.sock", "/b.sock", "/a.sock"], 0),
            Ok(PodmanSockets {
                fixed: vec!["/a.sock".into(), "/b.sock".into()],
                discover_under: None,
            })
        );
        assert_eq!(
            sockets(&["/srv/p.sock", "auto"], 0),
            Ok(PodmanSockets {
                fixed: vec!["/srv/p.sock".into(), "/run/podman/podman.sock".into()],
                discover_under: Some("/run/user".into()),
            })
        );
    }

    #[test]
    fn none_turns_podman_off_and_only_alone() {
        assert!(sockets(&["none"], 0).unwrap().is_off());
        assert!(sockets(&[""], 0).unwrap().is_off());
        let err = sockets(&["none", "/a.sock"], 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--podman-socket none cannot be combined with other sockets (/a.sock)"
        );
        assert_eq!(
            parse_socket_arg("podman.sock"),
            Err(SocketArgError::NotAbsolute {
                raw: "podman.sock".into()
            })
        );
    }

    #[test]
    fn discovery_takes_sockets_their_user_owns() {
        let root = tempfile::tempdir().unwrap();
        // SAFETY: getuid cannot fail.
        let me = unsafe { libc::getuid() };
        let mine = root.path().join(me.to_string());
        std::fs::create_dir_all(mine.join("podman")).unwrap();
        let _listener = UnixListener::bind(mine.join(ROOTLESS_SOCKET)).unwrap();
        // Not a uid; a uid whose directory is not its own; a regular file; no socket.
        for name in ["podman", "4242", "4243"] {
            std::fs::create_dir_all(root.path().join(name).join("podman")).unwrap();
        }
        std::fs::write(root.path().join("4243").join(ROOTLESS_SOCKET), "").unwrap();
        let _other = UnixListener::bind(root.path().join("podman").join(ROOTLESS_SOCKET));
        let found = discover(root.path());
        if me == 0 {
            // Root's own directory is left out, as are the others.
            assert!(found.is_empty(), "{found:?}");
        } else {
            assert_eq!(found, BTreeSet::from([mine.join(ROOTLESS_SOCKET)]));
        }
        // A symlinked runtime directory is not followed.
        let link = root.path().join((me + 1).to_string());
        std::os::unix::fs::symlink(&mine, &link).unwrap();
        assert!(!discover(root.path()).contains(&link.join(ROOTLESS_SOCKET)));
        assert!(discover(&root.path().join("missing")).is_empty());
    }

    fn listed(id: &str, name: &str) -> Listed {
        Listed {
            id: id.to_owned(),
            meta: ContainerMeta {
                name: Some(name.to_owned()),
                ..ContainerMeta::default()
            },
            running: true,
            pid: Some(7),
            start_time_ns: None,
        }
    }

    #[test]
    fn each_socket_replaces_its_own_list_and_a_gone_one_keeps_its_names() {
        let store = Arc::new(MetadataStore::default());
        let registry = PodmanRegistry::new(Arc::clone(&store));
        let (a, b) = (
            Path::new("/run/user/1/podman/podman.sock"),
            Path::new("/x/b.sock"),
        );
        registry.register(a, Source::PodmanRootless);
        registry.register(b, Source::PodmanRootless);
        registry.replace(a, vec![listed("1", "one"), listed("2", "two")]);
        registry.replace(b, vec![listed("3", "three"), listed("2", "not-two")]);
        assert_eq!(store.len(Source::PodmanRootless), 3);
        // The first socket's answer for an id both list.
        assert_eq!(store.get("2").unwrap().name.as_deref(), Some("two"));
        assert_eq!(registry.socket_of("3").as_deref(), Some(b));
        registry.replace(a, vec![listed("1", "one")]);
        assert_eq!(store.get("2").unwrap().name.as_deref(), Some("not-two"));
        // A socket that goes keeps its names, and says no more about the state.
        registry.set_state(a, SourceState::Connected);
        assert!(store.state(Source::PodmanRootless).is_up());
        assert_eq!(registry.unwatch(a), Some(SourceState::Connected));
        assert_eq!(store.state(Source::PodmanRootless), SourceState::Starting);
        assert_eq!(store.get("1").unwrap().name.as_deref(), Some("one"));
        // Its runtime directory (/run/user/1) does not exist here: forgotten.
        registry.forget_departed();
        assert!(store.get("1").is_none());
        assert_eq!(registry.running().len(), 2);
    }

    #[test]
    fn a_listed_main_process_counts_while_it_is_the_same_and_the_users() {
        let me = std::process::id();
        let start = procfs::start_time_ns(Path::new(PROC), me);
        let owner = podman_pidns::user_namespace_owner(Path::new(PROC), me);
        let running = |start_time_ns, rootless_uid| RunningContainer {
            id: "c".into(),
            pid: Some(me),
            start_time_ns,
            rootless_uid,
        };
        assert!(running(start, None).is_alive());
        assert!(running(start, owner).is_alive());
        // Another process under the same PID; a user that owns not this process's namespace.
        assert!(!running(start.map(|s| s + 1), None).is_alive());
        assert!(!running(start, owner.map(|o| o + 1)).is_alive());
        assert!(!running(None, None).is_alive());
    }

    #[test]
    fn a_rootless_list_never_renames_a_rootful_container() {
        let store = Arc::new(MetadataStore::default());
        let registry = PodmanRegistry::new(Arc::clone(&store));
        let (rootful, user) = (Path::new("/run/podman/podman.sock"), Path::new("/u.sock"));
        registry.register(rootful, Source::Podman);
        registry.register(user, Source::PodmanRootless);
        registry.replace(user, vec![listed("abc", "impostor")]);
        registry.replace(rootful, vec![listed("abc", "real")]);
        assert_eq!(store.get("abc").unwrap().name.as_deref(), Some("real"));
        assert_eq!(registry.socket_of("abc").as_deref(), Some(rootful));
        let running = registry.running();
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].rootless_uid, None);
    }
}
