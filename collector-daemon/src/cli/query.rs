//! `query`: one request to a running daemon's socket API, its answer printed as a table or
//! as the daemon's JSON.
use std::{fmt::Write as _, process::ExitCode};

use hyper::Method;

use super::{
    args::{Query, QueryArgs},
    table::answer_table,
};
use crate::api::{client, schema::ErrorBody};

/// `text` percent-encoded as one URI path segment (all but RFC 3986's unreserved
/// characters), so that whatever the user typed reaches the daemon, which says what is wrong
/// with it, instead of failing to form a request.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// `?max_age_ms=N` when a tolerance is given.
fn max_age_query(max_age_ms: Option<u64>) -> String {
    max_age_ms.map_or_else(String::new, |ms| format!("?max_age_ms={ms}"))
}

/// Runs `query`: prints the answer, and returns failure for error answers.
pub async fn query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let (method, path, body) = request(&args.what)?;
    let answer = client::request(&args.socket, method, &path, body).await?;
    if !answer.status.is_success() {
        let message = serde_json::from_slice::<ErrorBody>(&answer.body).map_or_else(
            |_| String::from_utf8_lossy(&answer.body).into_owned(),
            |e| e.error,
        );
        if args.json {
            println!("{}", String::from_utf8_lossy(&answer.body));
        }
        eprintln!("error ({}): {message}", answer.status);
        return Ok(ExitCode::FAILURE);
    }
    if args.json {
        println!("{}", String::from_utf8_lossy(&answer.body));
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", answer_table(&args.what, &answer.body)?);
    Ok(ExitCode::SUCCESS)
}

/// The API request that asks `what`: method, path (with query string) and JSON body.
fn request(what: &Query) -> serde_json::Result<(Method, String, Option<Vec<u8>>)> {
    Ok(match what {
        Query::Pid { pid } => (Method::GET, format!("/v1/pid/{pid}"), None),
        Query::Pids { pids } => (
            Method::POST,
            "/v1/pids".to_owned(),
            Some(serde_json::to_vec(pids)?),
        ),
        Query::Inode { inode } => (Method::GET, format!("/v1/inode/{inode}"), None),
        Query::Myself => (Method::GET, "/v1/self".to_owned(), None),
        Query::Containers => (Method::GET, "/v1/containers".to_owned(), None),
        Query::Pod { uid, name, init } => (
            Method::GET,
            format!(
                "/v1/pod/{}/{}{}",
                path_segment(uid),
                path_segment(name),
                if *init { "?init=true" } else { "" }
            ),
            None,
        ),
        Query::PodNetwork { uid, max_age_ms } => (
            Method::GET,
            format!(
                "/v1/pods/{}/network{}",
                path_segment(uid),
                max_age_query(*max_age_ms)
            ),
            None,
        ),
        Query::Stats { id, max_age_ms } => {
            let query = max_age_query(*max_age_ms);
            (
                Method::GET,
                format!("/v1/containers/{}/stats{query}", path_segment(id)),
                None,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(path_segment("3f4b-a_b.c~"), "3f4b-a_b.c~");
        assert_eq!(path_segment("bad id!"), "bad%20id%21");
        assert_eq!(path_segment("a/../b?x#y"), "a%2F..%2Fb%3Fx%23y");
        assert_eq!(path_segment("é"), "%C3%A9");
    }

    #[test]
    fn stats_requests_carry_the_id_as_one_segment_and_the_age_as_a_query() {
        let what = Query::Stats {
            id: "a/b".to_owned(),
            max_age_ms: Some(500),
        };
        let (method, path, body) = request(&what).unwrap();
        assert_eq!(method, Method::GET);
        assert_eq!(path, "/v1/containers/a%2Fb/stats?max_age_ms=500");
        assert_eq!(body, None);
        let pod = Query::PodNetwork {
            uid: "0c5b1f6e-1d2a".to_owned(),
            max_age_ms: None,
        };
        assert_eq!(request(&pod).unwrap().1, "/v1/pods/0c5b1f6e-1d2a/network");
        let (method, path, body) = request(&Query::Pids { pids: vec![1, 2] }).unwrap();
        assert_eq!(
            (method, path.as_str(), body.as_deref()),
            (Method::POST, "/v1/pids", Some(&b"[1,2]"[..]))
        );
    }
}
