//! Network counters of a network namespace from `/proc/<pid>/net/dev`, and namespace
//! identity from `/proc/<pid>/ns/net`.
//!
//! `/proc/<pid>/net/dev` shows the counters of the network namespace that `<pid>` is in, so no
//! `setns` is needed (Datadog's provider relies on the same fact). The namespace is named by
//! the inode of `/proc/<pid>/ns/net`, which is what `network_isolation_group_id` carries:
//! containers that share it (a Kubernetes pod) share these counters.
use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, BufReader},
    os::unix::fs::MetadataExt as _,
    path::Path,
};

use procfs::{FromBufRead as _, net::InterfaceDeviceStatus};

use crate::stats::{InterfaceNetStats, NetworkStats};

/// The loopback interface: excluded, as in Datadog's provider, because traffic a container sends to
/// itself is not network use.
const LOOPBACK: &str = "lo";

/// Per-interface counters of `/proc/<pid>/net/dev` (loopback excluded), with totals. `Ok(None)`
/// when the namespace has no interface but loopback. `NotFound` when the process is gone.
pub fn read_net_dev(proc_root: &Path, pid: u32) -> io::Result<Option<NetworkStats>> {
    let file = File::open(proc_root.join(pid.to_string()).join("net/dev"))?;
    let parsed = InterfaceDeviceStatus::from_buf_read(BufReader::new(file))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(network_stats(&parsed))
}

/// Parses the text of a `net/dev` file (for tests and callers holding the text).
pub fn parse_net_dev(text: &str) -> io::Result<Option<NetworkStats>> {
    let parsed = InterfaceDeviceStatus::from_buf_read(text.as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(network_stats(&parsed))
}

fn network_stats(parsed: &InterfaceDeviceStatus) -> Option<NetworkStats> {
    let interfaces: BTreeMap<String, InterfaceNetStats> = parsed
        .0
        .values()
        .filter(|dev| dev.name != LOOPBACK)
        .map(|dev| {
            let stats = InterfaceNetStats {
                bytes_sent: Some(dev.sent_bytes),
                bytes_rcvd: Some(dev.recv_bytes),
                packets_sent: Some(dev.sent_packets),
                packets_rcvd: Some(dev.recv_packets),
            };
            (dev.name.clone(), stats)
        })
        .collect();
    if interfaces.is_empty() {
        return None;
    }
    let sum = |f: fn(&InterfaceNetStats) -> Option<u64>| {
        Some(
            interfaces
                .values()
                .filter_map(f)
                .fold(0u64, u64::saturating_add),
        )
    };
    Some(NetworkStats {
        timestamp: Some(std::time::SystemTime::now()),
        bytes_sent: sum(|i| i.bytes_sent),
        bytes_rcvd: sum(|i| i.bytes_rcvd),
        packets_sent: sum(|i| i.packets_sent),
        packets_rcvd: sum(|i| i.packets_rcvd),
        interfaces: Some(interfaces),
        network_isolation_group_id: None,
        using_host_network: None,
    })
}

/// The inode of `/proc/<pid>/ns/net`: the network namespace's identity.
pub fn netns_inode(proc_root: &Path, pid: u32) -> io::Result<u64> {
    Ok(std::fs::metadata(proc_root.join(pid.to_string()).join("ns/net"))?.ino())
}

/// The host's network namespace: PID 1's (as Datadog's provider assumes; PID 1 of the
/// daemon's PID namespace, which is the host's when the daemon runs with the host PID
/// namespace).
/// When PID 1's namespace cannot be read (a sandboxed init denies it even to root), the
/// daemon's own: a node agent runs in the host's network namespace.
pub fn host_netns_inode(proc_root: &Path) -> io::Result<u64> {
    netns_inode(proc_root, 1).or_else(|e| {
        tracing::debug!(error = %e, "PID 1's network namespace is unreadable; using our own");
        netns_inode(proc_root, std::process::id())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Copied from a Docker container's /proc/<pid>/net/dev on this machine (kernel 6.18).
    const CONTAINER: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     840      10    0    0    0     0          0         0      840      10    0    0    0     0       0          0
  eth0: 1050356     766    0    0    0     0          0         0    11530     155    0    0    0     0       0          0
";

    #[test]
    fn loopback_excluded_and_totals_summed() {
        let stats = parse_net_dev(CONTAINER).unwrap().unwrap();
        let ifaces = stats.interfaces.as_ref().unwrap();
        assert_eq!(ifaces.len(), 1);
        let eth0 = &ifaces["eth0"];
        assert_eq!(eth0.bytes_rcvd, Some(1_050_356));
        assert_eq!(eth0.packets_rcvd, Some(766));
        assert_eq!(eth0.bytes_sent, Some(11_530));
        assert_eq!(eth0.packets_sent, Some(155));
        assert_eq!(stats.bytes_rcvd, Some(1_050_356));
        assert_eq!(stats.packets_sent, Some(155));
    }

    #[test]
    fn two_interfaces_add_up() {
        let text = format!(
            "{CONTAINER}  eth1:      100       2    0    0    0     0          0         0      50      1    0    0    0     0       0          0\n"
        );
        let stats = parse_net_dev(&text).unwrap().unwrap();
        assert_eq!(stats.bytes_rcvd, Some(1_050_456));
        assert_eq!(stats.bytes_sent, Some(11_580));
        assert_eq!(stats.packets_rcvd, Some(768));
    }

    #[test]
    fn only_loopback_is_unknown() {
        let text = CONTAINER.lines().take(3).collect::<Vec<_>>().join("\n");
        assert_eq!(parse_net_dev(&text).unwrap(), None);
    }

    #[test]
    fn malformed_is_an_error() {
        let text = "h1\nh2\n eth0: 12 x\n";
        assert!(parse_net_dev(text).is_err());
    }

    #[test]
    fn own_namespace_is_the_host_one() {
        let proc_root = Path::new("/proc");
        let own = netns_inode(proc_root, std::process::id()).unwrap();
        assert!(own > 0);
        // The unit tests run in the host's namespace.
        assert_eq!(host_netns_inode(proc_root).unwrap(), own);
    }
}
