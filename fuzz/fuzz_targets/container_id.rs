//! cgroup path → container id (`identity::container_id`), the parse every cgroup directory
//! and `/proc/<pid>/cgroup` line goes through.
//!
//! Beyond "no panic": an id is one of the three shapes the module recognises, and it is the
//! name of the component that `container_path_len` ends with.
#![no_main]

use collector_daemon::identity::container_id::{
    Runtime, container_from_component, container_from_path,
};
use libfuzzer_sys::fuzz_target;

fn lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `s` is lowercase hex groups of these lengths joined by `sep`.
fn hex_groups(s: &str, lengths: &[usize], sep: char) -> bool {
    let groups: Vec<&str> = s.split(sep).collect();
    groups.len() == lengths.len()
        && groups
            .iter()
            .zip(lengths)
            .all(|(g, &n)| g.len() == n && lower_hex(g))
}

fn check_id(id: &str, runtime: Option<Runtime>) {
    let sha = id.len() == 64 && lower_hex(id);
    let fargate = runtime == Some(Runtime::EcsFargate)
        && id.len() > 33
        && lower_hex(&id[..32])
        && id.as_bytes()[32] == b'-'
        && id[33..].bytes().all(|b| b.is_ascii_digit());
    let garden = runtime == Some(Runtime::Garden) && hex_groups(id, &[8, 4, 4, 4, 4], '-');
    assert!(
        sha || fargate || garden,
        "unexpected id shape {id:?} ({runtime:?})"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((id, runtime)) = container_from_component(path) {
        assert!(!path.contains('/'));
        assert!(path.contains(id.as_str()));
        check_id(&id, runtime);
    }
    let Some(found) = container_from_path(path) else {
        return;
    };
    check_id(&found.id, found.runtime);
    let top = path
        .get(..found.container_path_len)
        .expect("container_path_len ends on a char boundary inside the path");
    let component = top.rsplit('/').next().unwrap_or(top);
    assert!(
        component.contains(found.id.as_str()),
        "{component:?} does not hold {:?}",
        found.id
    );
    // The top directory's own name gives the same id.
    let (id, _) = container_from_component(component).expect("the container's component matches");
    assert_eq!(id, found.id);
    // Everything below the container's directory belongs to it.
    assert!(
        path[found.container_path_len..].is_empty()
            || path[found.container_path_len..].starts_with('/')
    );
    if let Some(uid) = &found.pod_uid {
        assert!(
            hex_groups(uid, &[8, 4, 4, 4, 12], '-') || (uid.len() == 32 && lower_hex(uid)),
            "unexpected pod uid {uid:?}"
        );
    }
});
