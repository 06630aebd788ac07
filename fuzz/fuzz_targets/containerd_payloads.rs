//! containerd API payloads as the metadata collector reads them (`collectors::containerd`):
//! event envelopes from the events service (protobuf `Envelope` holding an `Any` decoded by
//! topic) and containers from the containers service (protobuf `Container`, labels
//! included), picked by the first byte; decoded with prost as tonic decodes them.
//!
//! Beyond "no panic": a change always names a container or namespace, empty images and unset
//! times are unknown, and the Kubernetes fields come from the labels.
#![no_main]

use collector_daemon::collectors::containerd::{Change, change, container_meta};
use containerd_client::{services::v1::Container, types::Envelope};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector % 2 == 0 {
        let Ok(envelope) = Envelope::decode(rest) else {
            return;
        };
        match change(&envelope) {
            Ok(Some(Change::Container { namespace, id } | Change::Deleted { namespace, id })) => {
                assert!(!id.is_empty());
                assert_eq!(namespace, envelope.namespace);
            }
            Ok(Some(Change::Namespace { name })) => assert!(!name.is_empty()),
            Ok(None) | Err(_) => {}
        }
        return;
    }
    let Ok(container) = Container::decode(rest) else {
        return;
    };
    let labels = container.labels.clone();
    let (id, meta) = container_meta("k8s.io", container);
    assert_eq!(meta.name.as_deref(), Some(id.as_str()));
    assert!(meta.image.as_deref() != Some(""));
    assert!(meta.created.is_none_or(|t| t > std::time::UNIX_EPOCH));
    assert_eq!(
        meta.pod_name(),
        labels.get("io.kubernetes.pod.name").map(String::as_str)
    );
});
