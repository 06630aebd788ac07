//! The command line's grammar: the clap types of `run` and `query`, their defaults and
//! value parsers, and the daemon settings `run`'s flags make.
use std::{num::ParseIntError, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    api::PID_MAX_LIMIT,
    collectors::podman_sockets::{PodmanSockets, SocketArg, SocketArgError, parse_socket_arg},
    daemon::RunOptions,
};

/// Default API socket.
pub const DEFAULT_SOCKET: &str = "/run/collector/collector.sock";
/// Default metrics address (loopback: scrape it locally or through a proxy).
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9479";
/// Default Docker Engine API socket.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Default containerd socket.
pub const DEFAULT_CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// Default CRI socket: containerd's, else CRI-O's when it exists (see `collectors::cri`).
const DEFAULT_CRI_SOCKET: &str = "auto";
/// Default CRI-O socket (its HTTP info endpoint).
const DEFAULT_CRIO_SOCKET: &str = "/var/run/crio/crio.sock";
/// Default pin directory under bpffs.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/collector";

/// Which container is a process or cgroup in, and what does each container use.
#[derive(Debug, Parser)]
#[command(name = "collector-daemon", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (as root: it loads eBPF programs and reads every process's cgroups).
    // Boxed: its flags outweigh the other subcommands many times over.
    Run(Box<RunArgs>),
    /// Ask a running daemon.
    Query(QueryArgs),
    /// Remove the pinned programs and maps a daemon left (the programs detach, the counters
    /// and queued events are dropped) and the pin directory. Refused while a daemon runs
    /// with that directory.
    Uninstall(UninstallArgs),
}

/// `uninstall` flags.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// The pin directory the daemon used.
    #[arg(long, env = "COLLECTOR_PIN_DIR", default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
}

/// `run` flags. Each can also come from its `COLLECTOR_*` environment variable or from the
/// configuration file (`--config`; see `cli::config`); a flag wins over both, the
/// environment over the file.
#[derive(Debug, Args)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each bool is an on/off command-line flag, as clap declares them"
)]
pub struct RunArgs {
    /// TOML file with settings for these flags (keys are the flag names with underscores: `exited_grace = 120`);
    /// default /etc/collector/config.toml when it exists.
    #[arg(long, env = "COLLECTOR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the settings flags, environment and configuration file make, then exit.
    #[arg(long)]
    pub check_config: bool,
    /// Unix socket to serve the API on (mode 0660).
    #[arg(long, env = "COLLECTOR_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Group that owns the socket (name or gid), so its members may query.
    #[arg(long, env = "COLLECTOR_SOCKET_GROUP")]
    pub socket_group: Option<String>,
    /// TCP address for /metrics and /healthz ("none" to disable).
    #[arg(long, env = "COLLECTOR_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: String,
    /// Seconds an exited process stays resolvable (marked exited).
    #[arg(long, env = "COLLECTOR_EXITED_GRACE", default_value_t = 60)]
    pub exited_grace: u64,
    /// Do not load eBPF programs: answer from procfs and cgroupfs only.
    #[arg(long, env = "COLLECTOR_NO_EBPF")]
    pub no_ebpf: bool,
    /// bpffs directory for the pinned maps (the PID→cgroup map as `processes`, for other
    /// eBPF programs to read; the event ring buffer; the counters) and the programs' links.
    /// The pins outlive the daemon: the programs keep tracking and counting while it is
    /// down, and a restarted daemon reuses them (see `--unpin-on-exit` and `uninstall`).
    #[arg(long, env = "COLLECTOR_PIN_DIR", default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    /// Pin nothing: the programs detach and the maps go when the daemon exits, and a
    /// restarted daemon starts from empty counters.
    #[arg(long, env = "COLLECTOR_NO_PIN")]
    pub no_pin: bool,
    /// Remove the pins at exit (the programs detach, the counters are dropped) instead of
    /// leaving them for the next start.
    #[arg(long, env = "COLLECTOR_UNPIN_ON_EXIT")]
    pub unpin_on_exit: bool,
    /// Capacity of the kernel PID→cgroup map (live processes).
    #[arg(long, env = "COLLECTOR_MAX_PROCESSES", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1024..=4_194_304))]
    pub max_processes: u32,
    /// Size of the kernel→daemon event ring buffer in bytes (a power of two, at least one
    /// page). A burst of events larger than this while the daemon is not reading is lost,
    /// counted, and repaired by a re-scan. 1 MiB holds ~14,500 process events (72 bytes) or
    /// ~990 cgroup events (1,056 bytes), and the daemon is woken at a quarter full; the buffer
    /// is mapped into the daemon twice, so it adds twice its size to the resident memory.
    #[arg(long, env = "COLLECTOR_RING_BUFFER_BYTES", default_value_t = 1 << 20, value_parser = parse_ring_buffer_bytes)]
    pub ring_buffer_bytes: u32,
    /// Capacity of the kernel's per-cgroup network counters (cgroups with traffic). Entries
    /// are allocated as cgroups show traffic, 32 bytes × possible CPUs each. Traffic of
    /// cgroups beyond it is not counted (and counted as `net_map_full`).
    #[arg(long, env = "COLLECTOR_NET_COUNTER_ENTRIES", default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub net_counter_entries: u32,
    /// Capacity of the kernel's block IO counters (owning cgroup × disk pairs), allocated as
    /// they appear, 32 bytes × possible CPUs each.
    #[arg(long, env = "COLLECTOR_IO_COUNTER_ENTRIES", default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub io_counter_entries: u32,
    /// Cgroups the kernel's cgroup walk records per v1 hierarchy (128 bytes each, allocated
    /// at start). A full collection reads the v1 memory, cpu, pids and cpuset values of these
    /// cgroups in the kernel, one walk per hierarchy; cgroups beyond it are read from their
    /// files (and counted as `cgroup_values_full`).
    #[arg(long, env = "COLLECTOR_CGROUP_VALUES_ENTRIES", default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub cgroup_values_entries: u32,
    /// cgroup stats files kept open between reads (0: open each file at every read). Each
    /// costs ~5 KiB of kernel memory, charged to the daemon's cgroup; a read through a held
    /// descriptor costs 0.4–2.4 µs, opening the file afresh 7–16 µs. A container takes ~17 on
    /// a hybrid host, fewer on cgroup v2. Never more than `RLIMIT_NOFILE` leaves.
    #[arg(long, env = "COLLECTOR_CGROUP_FILE_CACHE", default_value_t = 32_768, value_parser = clap::value_parser!(u32).range(0..=1_048_576))]
    pub cgroup_file_cache: u32,
    /// Docker Engine API socket to read container names, images and labels from ("none":
    /// do not ask Docker). A socket that does not exist is noted once and watched for.
    #[arg(long, env = "COLLECTOR_DOCKER_SOCKET", default_value = DEFAULT_DOCKER_SOCKET)]
    pub docker_socket: String,
    /// containerd gRPC socket to read container images and labels from, every namespace
    /// ("none": do not ask containerd).
    #[arg(long, env = "COLLECTOR_CONTAINERD_SOCKET", default_value = DEFAULT_CONTAINERD_SOCKET)]
    pub containerd_socket: String,
    /// Podman's libpod API sockets to read container names, images, labels and pods from
    /// (comma-separated, repeatable; "none": do not ask Podman). "auto" (the default): as
    /// root `/run/podman/podman.sock` and every rootless user's
    /// `/run/user/<uid>/podman/podman.sock`, looked for every 5 s; as another user
    /// `$XDG_RUNTIME_DIR/podman/podman.sock`. A named socket that is missing is noted once
    /// and watched for.
    #[arg(long, env = "COLLECTOR_PODMAN_SOCKET", value_delimiter = ',', value_parser = parse_socket_arg)]
    pub podman_socket: Vec<SocketArg>,
    /// CRI runtime service socket for pod lookups (`/v1/pod/{uid}/{name}`) and CRI-O's
    /// stats ("auto": containerd's /run/containerd/containerd.sock, else CRI-O's
    /// /var/run/crio/crio.sock when that exists; "none": do not ask CRI). A socket that does
    /// not exist at start makes pod lookups unavailable for good.
    #[arg(long, env = "COLLECTOR_CRI_SOCKET", default_value = DEFAULT_CRI_SOCKET)]
    pub cri_socket: String,
    /// CRI-O's socket, whose HTTP info endpoint (`/containers/{id}`) names CRI-O's containers
    /// when CRI does not ("none": do not ask).
    #[arg(long, env = "COLLECTOR_CRIO_SOCKET", default_value = DEFAULT_CRIO_SOCKET)]
    pub crio_socket: String,
    /// Seconds a runtime API (Docker, containerd, Podman, CRI, ECS, Garden, kubelet) has to answer one
    /// request before it counts as down (the outage is logged once and retried with a
    /// backoff): a runtime that accepts connections and never answers holds only its own
    /// watcher, never the API.
    #[arg(long, env = "COLLECTOR_RUNTIME_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub runtime_timeout: u64,
    /// ECS task metadata endpoint v4 to read the task's containers, stats and limits from
    /// ("auto": `ECS_CONTAINER_METADATA_URI_V4` when set; "none": do not ask ECS).
    #[arg(long, env = "COLLECTOR_ECS_METADATA_URI", default_value = "auto")]
    pub ecs_metadata_uri: String,
    /// Cloud Foundry's Garden API: its unix socket, or an http:// URL ("none": do not ask
    /// Garden). A socket that does not exist at start makes Garden absent for good.
    #[arg(long, env = "COLLECTOR_GARDEN_SOCKET", default_value = crate::collectors::garden::DEFAULT_SOCKET)]
    pub garden_socket: String,
    /// kubelet URL to read pods from (`/pods`), `https://` or `http://` ("auto":
    /// `https://$NODE_NAME:10250` when `NODE_NAME` is set, else `https://localhost:10250` when
    /// the token file exists; "none": do not ask the kubelet).
    #[arg(long, env = "COLLECTOR_KUBELET_URL", default_value = "auto")]
    pub kubelet_url: String,
    /// File with the bearer token sent to the kubelet ("none": send none).
    #[arg(long, env = "COLLECTOR_KUBELET_TOKEN_FILE", default_value = crate::collectors::kubelet::DEFAULT_TOKEN_FILE)]
    pub kubelet_token_file: String,
    /// CA certificates (PEM) the kubelet's HTTPS certificate is checked against; the default
    /// is used where it exists ("none", or the default missing: the system's roots).
    #[arg(long, env = "COLLECTOR_KUBELET_CA_FILE", default_value = crate::collectors::kubelet::DEFAULT_CA_FILE)]
    pub kubelet_ca_file: String,
    /// Check the kubelet's HTTPS certificate (`--kubelet-tls-verify=false` takes any, as
    /// Datadog's `kubelet_tls_verify: false`: for kubelets serving a self-signed certificate).
    #[arg(long, env = "COLLECTOR_KUBELET_TLS_VERIFY", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub kubelet_tls_verify: bool,
    /// Seconds between two polls of the runtimes without an event stream (ECS, Garden, kubelet).
    #[arg(long, env = "COLLECTOR_RUNTIME_POLL_INTERVAL", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub runtime_poll_interval: u64,
    /// Runtime labels exported as `container_label_<name>` on the container metrics and
    /// listed in API answers (comma-separated, repeatable). Others are left out: every
    /// label on every series multiplies what Prometheus stores.
    #[arg(long, env = "COLLECTOR_CONTAINER_LABELS", value_delimiter = ',')]
    pub container_labels: Vec<String>,
    /// procfs mount point.
    #[arg(long, default_value = "/proc", hide = true)]
    pub proc_root: PathBuf,
}

impl RunArgs {
    /// Refuses what the flags' own parsers cannot see alone: `--podman-socket none` with
    /// other sockets.
    pub fn validate(&self) -> Result<(), SocketArgError> {
        self.podman_sockets().map(drop)
    }

    /// The Podman sockets `--podman-socket` names, for this process's user.
    fn podman_sockets(&self) -> Result<PodmanSockets, SocketArgError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        PodmanSockets::from_args(&self.podman_socket, euid, xdg.as_deref())
    }

    /// The daemon's settings.
    pub fn options(&self) -> RunOptions {
        RunOptions {
            socket: self.socket.clone(),
            socket_group: self.socket_group.clone(),
            metrics_addr: match self.metrics_addr.as_str() {
                "" | "none" => None,
                addr => Some(addr.to_owned()),
            },
            exited_grace: Duration::from_secs(self.exited_grace),
            no_ebpf: self.no_ebpf,
            pin_dir: (!self.no_pin).then(|| self.pin_dir.clone()),
            unpin_on_exit: self.unpin_on_exit,
            max_processes: self.max_processes,
            ring_buffer_bytes: self.ring_buffer_bytes,
            net_counter_entries: self.net_counter_entries,
            io_counter_entries: self.io_counter_entries,
            cgroup_values_entries: self.cgroup_values_entries,
            cgroup_file_cache: self.cgroup_file_cache as usize,
            proc_root: self.proc_root.clone(),
            docker_socket: socket_option(&self.docker_socket),
            containerd_socket: socket_option(&self.containerd_socket),
            podman_sockets: self.podman_sockets().unwrap_or_default(),
            cri_socket: match self.cri_socket.as_str() {
                "auto" => Some(crate::collectors::cri::default_socket()),
                other => socket_option(other),
            },
            crio_socket: socket_option(&self.crio_socket),
            runtime_timeout: Duration::from_secs(self.runtime_timeout),
            ecs_metadata_uri: self.ecs_metadata_uri.clone(),
            garden_socket: self.garden_socket.clone(),
            kubelet_url: self.kubelet_url.clone(),
            kubelet_token_file: socket_option(&self.kubelet_token_file),
            kubelet_ca_file: socket_option(&self.kubelet_ca_file),
            kubelet_tls_verify: self.kubelet_tls_verify,
            runtime_poll_interval: Duration::from_secs(self.runtime_poll_interval),
            container_labels: self
                .container_labels
                .iter()
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect(),
        }
    }
}

/// A runtime socket flag: `None` for "none" or "".
fn socket_option(raw: &str) -> Option<PathBuf> {
    match raw {
        "" | "none" => None,
        path => Some(PathBuf::from(path)),
    }
}

/// Why a `--ring-buffer-bytes` value is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingBufferBytesError {
    /// Not a number of bytes.
    #[error("{raw:?}: {source}")]
    NotANumber {
        /// What was given.
        raw: String,
        /// Why it is not a `u32`.
        #[source]
        source: ParseIntError,
    },
    /// Not a size the kernel accepts for a ring buffer.
    #[error("{bytes} is not a power of two of at least {MIN_RING_BUFFER_BYTES}")]
    NotPowerOfTwoPages {
        /// The size given.
        bytes: u32,
    },
}

/// The smallest ring buffer: one page.
const MIN_RING_BUFFER_BYTES: u32 = 4096;

/// The kernel requires a ring buffer's size to be a power of two and a multiple of the page
/// size (4 KiB on every architecture this runs on).
fn parse_ring_buffer_bytes(raw: &str) -> Result<u32, RingBufferBytesError> {
    let bytes: u32 = raw
        .parse()
        .map_err(|source| RingBufferBytesError::NotANumber {
            raw: raw.to_owned(),
            source,
        })?;
    if bytes.is_power_of_two() && bytes >= MIN_RING_BUFFER_BYTES {
        Ok(bytes)
    } else {
        Err(RingBufferBytesError::NotPowerOfTwoPages { bytes })
    }
}

/// `query` flags.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The daemon's socket.
    #[arg(long, env = "COLLECTOR_SOCKET", default_value = DEFAULT_SOCKET, global = true)]
    pub socket: PathBuf,
    /// Print the JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// The question.
    #[command(subcommand)]
    pub what: Query,
}

/// Questions.
#[derive(Debug, Subcommand)]
pub enum Query {
    /// Which container is this PID in.
    Pid {
        /// The PID.
        #[arg(value_parser = clap::value_parser!(u32).range(1..=i64::from(PID_MAX_LIMIT)))]
        pid: u32,
    },
    /// Which containers are these PIDs in.
    Pids {
        /// The PIDs.
        #[arg(required = true, value_parser = clap::value_parser!(u32).range(1..=i64::from(PID_MAX_LIMIT)))]
        pids: Vec<u32>,
    },
    /// Which container owns the cgroup directory with this inode (v1 or v2).
    Inode {
        /// The inode (cgroup id).
        inode: u64,
    },
    /// Which container is this command in.
    #[command(name = "self")]
    Myself,
    /// Every known container.
    Containers,
    /// Which container is container NAME of pod UID (CRI).
    Pod {
        /// The pod's UID.
        uid: String,
        /// The container's name in the pod spec.
        name: String,
        /// It is an init container.
        #[arg(long)]
        init: bool,
    },
    /// A pod's network: the counters of the network namespace its containers share.
    PodNetwork {
        /// The pod's UID.
        uid: String,
        /// Accept values cached up to this many milliseconds ago (0: read now).
        #[arg(long)]
        max_age_ms: Option<u64>,
    },
    /// What a container uses: CPU, memory, IO, PIDs, network, open files.
    Stats {
        /// The container id (full).
        id: String,
        /// Accept values cached up to this many milliseconds ago (0: read now).
        #[arg(long)]
        max_age_ms: Option<u64>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_rejects_out_of_range_pids() {
        assert!(Cli::try_parse_from(["collector-daemon", "query", "pid", "0"]).is_err());
        assert!(Cli::try_parse_from(["collector-daemon", "query", "pid", "abc"]).is_err());
        assert!(Cli::try_parse_from(["collector-daemon", "query", "pid", "7"]).is_ok());
        assert!(Cli::try_parse_from(["collector-daemon", "query", "--json", "self"]).is_ok());
    }

    #[test]
    fn ring_buffer_sizes_are_powers_of_two_of_a_page_or_more() {
        assert_eq!(parse_ring_buffer_bytes("4096"), Ok(4096));
        assert_eq!(parse_ring_buffer_bytes("4194304"), Ok(4_194_304));
        for bad in ["0", "2048", "5000", "-1", "x"] {
            assert!(parse_ring_buffer_bytes(bad).is_err(), "{bad}");
        }
        // clap prints these after "invalid value '…' for '--ring-buffer-bytes …': ".
        let message = |raw| parse_ring_buffer_bytes(raw).unwrap_err().to_string();
        assert_eq!(
            message("5000"),
            "5000 is not a power of two of at least 4096"
        );
        assert_eq!(message("x"), "\"x\": invalid digit found in string");
    }
}
