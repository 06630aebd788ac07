//! `GET /v1/pod/{pod_uid}/{container_name}[?init=true]`: the container id of a pod's
//! container, from the collectors offering `ContainerIdForPodUidAndName` (the kubelet's
//! `/pods`; CRI where it is served), in priority order.
use std::sync::Arc;

use axum::{
    extract::{Path, RawQuery, State, rejection::PathRejection},
    http::StatusCode,
    response::Response,
};
use serde::Serialize;

use super::{
    routes::{ApiError, ApiState, blocking, json, meta_body},
    schema::RuntimeMetaBody,
};
use crate::provider::MaxAge;

/// The answer.
#[derive(Debug, Serialize)]
pub struct PodContainerBody {
    pub pod_uid: String,
    pub container_name: String,
    pub init_container: bool,
    pub container_id: String,
    /// The collector that answered.
    pub source: &'static str,
    #[serde(flatten)]
    pub meta: RuntimeMetaBody,
}

pub(super) async fn pod_container(
    State(state): State<Arc<ApiState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let Path((pod_uid, container_name)) =
        path.map_err(|e| ApiError::bad_request(format!("invalid path parameter: {e}")))?;
    let init_container = match query.as_deref() {
        None | Some("" | "init=false") => false,
        Some("init=true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid query {other:?}: expected init=true or init=false"
            )));
        }
    };
    let meta = state.collectors.provider().meta();
    if meta.chains().container_id_for_pod_uid_and_name.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no collector answers pod container lookups (no kubelet or CRI runtime answers yet)",
        ));
    }
    blocking(move || {
        let answer = meta.container_id_for_pod_uid_and_name(
            &pod_uid,
            &container_name,
            init_container,
            MaxAge::ZERO,
        )?;
        let Some(answer) = answer else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no container {container_name:?} in pod {pod_uid} is known"),
            ));
        };
        let meta = meta_body(&state, Some(&answer.value));
        Ok(json(&PodContainerBody {
            pod_uid,
            container_name,
            init_container,
            container_id: answer.value,
            source: answer.source,
            meta,
        }))
    })
    .await
}
