//! The daemon's JSON answers as the CLI's `query` reads them (`api::schema` bodies through
//! serde, timestamps through `stats`' RFC 3339 parser), the type picked by the first byte.
//!
//! Beyond "no panic": what is read serializes and reads back to the same value.
#![no_main]

use collector_daemon::api::schema::{ContainerBody, InodeBody, PidBody, StatsBody};
use libfuzzer_sys::fuzz_target;
use serde::{Serialize, de::DeserializeOwned};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let json = serde_json::to_vec(&value).expect("an answer serializes");
    let back: T = serde_json::from_slice(&json).expect("what was written reads back");
    assert_eq!(back, value);
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => round_trip::<PidBody>(rest),
        1 => round_trip::<Vec<PidBody>>(rest),
        2 => round_trip::<InodeBody>(rest),
        3 => round_trip::<Vec<ContainerBody>>(rest),
        _ => round_trip::<StatsBody>(rest),
    }
});
