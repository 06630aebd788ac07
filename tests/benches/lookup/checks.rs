//! Checks: a bench that silently measures errors is worthless.

use std::io;

use serde_json::Value;

use crate::{
    scenarios::Via,
    setup::{Batch, Plan, Target},
};

pub(crate) fn check_single(target: &Target, status: u16, body: &[u8], via: Via) {
    let text = || String::from_utf8_lossy(body);
    assert_eq!(
        status,
        200,
        "{}: GET /v1/pid/{}: {}",
        via.name(),
        target.pid,
        text()
    );
    let answer: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{}: answer is not JSON ({e}): {}", via.name(), text()));
    if let Err(e) = check_answer(&answer, target, via) {
        panic!("{}: GET /v1/pid/{}: {e}: {answer}", via.name(), target.pid);
    }
}

pub(crate) fn check_batch(plan: &Plan, batch: &Batch, status: u16, body: Option<&[u8]>, via: Via) {
    let text = || String::from_utf8_lossy(body.unwrap_or_default());
    assert_eq!(status, 200, "{}: POST /v1/pids: {}", via.name(), text());
    let Some(body) = body else { return };
    let answers: Vec<Value> = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{}: batch answer is not a JSON array ({e})", via.name()));
    assert_eq!(
        answers.len(),
        batch.members.len(),
        "{}: batch answer length",
        via.name()
    );
    for (answer, &index) in answers.iter().zip(&batch.members) {
        let target = &plan.targets[index];
        if let Err(e) = check_answer(answer, target, via) {
            panic!(
                "{}: POST /v1/pids, PID {}: {e}: {answer}",
                via.name(),
                target.pid
            );
        }
    }
}

/// The PID matches, there is no error, the source is the daemon's, and a containerized PID
/// resolves to its container.
pub(crate) fn check_answer(answer: &Value, target: &Target, via: Via) -> Result<(), String> {
    if answer["pid"] != target.pid {
        return Err(format!("answer for another PID (expected {})", target.pid));
    }
    if !answer["error"].is_null() {
        return Err("error answer".to_owned());
    }
    if answer["source"] != via.source() {
        return Err(format!("source is not {:?}", via.source()));
    }
    match &target.container {
        Some(id) if answer["container_id"] != id.as_str() => {
            Err(format!("container_id is not {id}"))
        }
        _ => Ok(()),
    }
}

pub(crate) fn check_in_process(target: &Target, id: &io::Result<Option<String>>) {
    match id {
        Err(e) => panic!("reading /proc/{}/cgroup: {e}", target.pid),
        Ok(found) if target.container.is_some() && *found != target.container => panic!(
            "/proc/{}/cgroup resolved to {found:?}, expected {:?}",
            target.pid, target.container
        ),
        Ok(_) => {}
    }
}
