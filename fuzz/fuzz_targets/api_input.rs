//! The socket API's own parsers of caller input, chosen by the input's first byte: a PID in a
//! path (`lookups::parse_pid`), the JSON body of `POST /v1/pids`
//! (`lookups::parse_pid_array`) and the `max_age_ms` query string (`routes::parse_max_age`).
//! The `http_api` target drives them through the router; here they run without it, many times
//! faster.
//!
//! Beyond "no panic": accepted values are in their documented ranges, and a rejection is a
//! 400, or a 413 for a batch over the limit, never a 5xx.
#![no_main]

use axum::{http::StatusCode, response::IntoResponse as _};
use collector_daemon::api::{
    MAX_BATCH, PID_MAX_LIMIT,
    lookups::{parse_pid, parse_pid_array},
    routes::{ApiError, parse_max_age},
};
use libfuzzer_sys::fuzz_target;

fn status(e: ApiError) -> StatusCode {
    e.into_response().status()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            let Ok(raw) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(pid) = parse_pid(raw) {
                assert!((1..=PID_MAX_LIMIT).contains(&pid));
            }
        }
        1 => match parse_pid_array(rest) {
            Ok(pids) => {
                assert!(pids.len() <= MAX_BATCH);
                assert!(pids.iter().all(|p| (1..=PID_MAX_LIMIT).contains(p)));
            }
            Err(e) => {
                let status = status(e);
                assert!(
                    status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
                    "{status}"
                );
            }
        },
        _ => {
            let Ok(query) = std::str::from_utf8(rest) else {
                return;
            };
            match parse_max_age(Some(query)) {
                Ok(age) => assert!(age.as_millis() <= 86_400_000),
                Err(e) => assert_eq!(status(e), StatusCode::BAD_REQUEST),
            }
        }
    }
});
