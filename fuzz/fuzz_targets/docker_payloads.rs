//! Docker Engine API payloads as the metadata collector reads them
//! (`collectors::docker`): `GET /containers/{id}/json`, `GET /containers/json` and the
//! `/events` stream, decoded into bollard's types as bollard decodes them (serde_json), then
//! turned into the store's metadata; and Docker's RFC 3339 times on their own. The first byte
//! picks the payload.
//!
//! Beyond "no panic": names lose only their leading slash, empty images are unknown, and a
//! time Docker writes reads back to the same instant from the daemon's own formatting.
#![no_main]

use bollard::models::{ContainerInspectResponse, ContainerSummary, EventMessage};
use collector_daemon::{
    collectors::docker::{coalesce, meta_from_inspect, meta_from_summary, parse_docker_time},
    stats::format_rfc3339,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            if let Ok(response) = serde_json::from_slice::<ContainerInspectResponse>(rest) {
                let name = response.name.clone();
                let meta = meta_from_inspect(response);
                if let Some(got) = &meta.name {
                    assert!(!got.is_empty());
                    let raw = name.expect("a name comes from the answer");
                    assert_eq!(raw.strip_prefix('/').unwrap_or(&raw), got);
                }
                assert!(meta.image.as_deref() != Some(""));
            }
        }
        1 => {
            if let Ok(list) = serde_json::from_slice::<Vec<ContainerSummary>>(rest) {
                for summary in list {
                    let meta = meta_from_summary(summary);
                    assert!(meta.name.as_deref() != Some(""));
                    assert!(meta.image.as_deref() != Some(""));
                    assert!(meta.started.is_none());
                }
            }
        }
        2 => {
            // The stream is a sequence of JSON objects; bollard decodes them one at a time.
            let events: Vec<EventMessage> = serde_json::Deserializer::from_slice(rest)
                .into_iter::<EventMessage>()
                .map_while(Result::ok)
                .collect();
            let changes = coalesce(events);
            assert!(changes.keys().all(|id| !id.is_empty()));
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(Some(time)) = parse_docker_time(text)
                && time >= std::time::UNIX_EPOCH
            {
                let formatted = format_rfc3339(time);
                assert_eq!(
                    parse_docker_time(&formatted).ok().flatten(),
                    Some(time),
                    "{text:?} -> {formatted:?}"
                );
            }
        }
    }
});
