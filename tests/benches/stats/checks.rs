//! Checks: a bench that measures error answers or half answers is worthless.

use std::{
    collections::{BTreeMap, HashMap},
    thread,
    time::{Duration, Instant},
};

use collector_tests::support::http::parse_response;
use serde_json::Value;

use crate::{
    COVER_TIMEOUT,
    collect::{Measured, Via},
};

/// What one answer held, for the report.
#[derive(Debug, Clone, Default)]
pub(crate) struct Answer {
    /// Containers listed (ours and any others on the machine).
    pub containers: usize,
    /// `sources` of the first test container.
    pub sources: BTreeMap<String, String>,
}

/// Checks a whole response: 200, a JSON array listing every id of `ids` with `cpu.total` and
/// `memory.usage_total` not null and `sources.network` of `via`; for a scrape, see
/// [`check_scrape`].
pub(crate) fn check(raw: &[u8], ids: &[String], via: Via) -> Result<Answer, String> {
    match via {
        Via::Ebpf | Via::Cgroupfs => {}
        Via::Scrape => return check_scrape(raw, ids),
        Via::ScrapeGzip => return check_gzipped(raw),
    }
    let response = parse_response(raw, true)
        .map_err(|e| format!("unparsable response: {e}"))?
        .ok_or("incomplete response")?;
    if response.status != 200 {
        return Err(format!(
            "status {}: {}",
            response.status,
            &response.body[..response.body.len().min(300)]
        ));
    }
    let answers: Vec<Value> = serde_json::from_str(&response.body)
        .map_err(|e| format!("body is not a JSON array ({e})"))?;
    let by_id: HashMap<&str, &Value> = answers
        .iter()
        .filter_map(|a| Some((a["container_id"].as_str()?, a)))
        .collect();
    for id in ids {
        let Some(answer) = by_id.get(id.as_str()) else {
            return Err(format!(
                "container {id} missing ({} containers listed)",
                answers.len()
            ));
        };
        for (section, field) in [("cpu", "total"), ("memory", "usage_total")] {
            if answer[section][field].is_null() {
                return Err(format!("{section}.{field} is null for {id}: {answer}"));
            }
        }
        if answer["sources"]["network"] != via.network_source() {
            return Err(format!(
                "sources.network is not {:?} for {id}: {}",
                via.network_source(),
                answer["sources"]
            ));
        }
    }
    let sources = ids
        .first()
        .and_then(|id| by_id.get(id.as_str()))
        .and_then(|a| a["sources"].as_object())
        .map(|s| {
            s.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("?").to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Answer {
        containers: answers.len(),
        sources,
    })
}

/// Checks a plain scrape: 200, and one `container_cpu_usage_seconds_total` and one
/// `container_memory_working_set_bytes` series for every id of `ids` (the `id` label is the
/// container's cgroup path, which ends in its id).
pub(crate) fn check_scrape(raw: &[u8], ids: &[String]) -> Result<Answer, String> {
    let response = parse_response(raw, true)
        .map_err(|e| format!("unparsable response: {e}"))?
        .ok_or("incomplete response")?;
    if response.status != 200 {
        return Err(format!("status {}", response.status));
    }
    let mut series: HashMap<(&str, &str), usize> = HashMap::new();
    let mut containers = std::collections::HashSet::new();
    for line in response.body.lines() {
        let Some((name, rest)) = line.split_once("{id=\"") else {
            continue;
        };
        let Some((path, _)) = rest.split_once('"') else {
            continue;
        };
        let id = path.rsplit('/').next().unwrap_or(path);
        containers.insert(id);
        *series.entry((name, id)).or_default() += 1;
    }
    for id in ids {
        for family in [
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes",
        ] {
            match series.get(&(family, id.as_str())) {
                Some(1) => {}
                found => return Err(format!("{family} of {id}: {found:?} series")),
            }
        }
    }
    Ok(Answer {
        containers: containers.len(),
        sources: BTreeMap::new(),
    })
}

/// Checks a gzipped scrape: 200 with `Content-Encoding: gzip` and a gzip body (its content is
/// the plain scrape's, checked there).
pub(crate) fn check_gzipped(raw: &[u8]) -> Result<Answer, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        return Err(format!("status line {:?}", head.lines().next()));
    }
    if !head.contains("content-encoding: gzip") {
        return Err(format!("not gzipped: {head}"));
    }
    if !raw[end + 4..].starts_with(&[0x1f, 0x8b]) {
        return Err("body has no gzip magic".to_owned());
    }
    Ok(Answer::default())
}

/// Asks until the daemon lists every test container with full values (a daemon learns of new
/// cgroups by events or by scanning; neither is what is measured here). Also the warm-up.
pub(crate) fn wait_covered(path: &Measured, ids: &[String]) -> Answer {
    let deadline = Instant::now() + COVER_TIMEOUT;
    let mut body = Vec::new();
    loop {
        let _ = path.collect(&mut body);
        // A client error (no such route, a rejected query) will not go away by waiting.
        if path.via != Via::ScrapeGzip
            && let Ok(Some(response)) = parse_response(&body, true)
            && (400..500).contains(&response.status)
        {
            panic!(
                "{}: GET {}: {} {}",
                path.name(),
                path.via.path(),
                response.status,
                response.body
            );
        }
        match check(&body, ids, path.via) {
            Ok(answer) => return answer,
            Err(e) if Instant::now() > deadline => panic!(
                "{}: GET {} did not cover the {} test containers within {COVER_TIMEOUT:?}: {e}",
                path.name(),
                path.via.path(),
                ids.len()
            ),
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}
