//! `collector-daemon run --check-config`: the settings flags, `COLLECTOR_*` environment
//! variables and the configuration file make, in that order of strength. Needs no root: the
//! daemon prints its settings and exits before loading anything.
use std::{path::Path, process::Command};

// Dependencies of the library this test does not use.
use {
    anyhow as _, axum as _, aya as _, aya_log as _, aya_obj as _, bollard as _, btf_rs as _,
    bytes as _, clap as _, collector_common as _, collector_daemon as _, containerd_client as _,
    dashmap as _, flate2 as _, foldhash as _, futures_util as _, http_body_util as _, hyper as _,
    hyper_util as _, k8s_cri as _, libc as _, log as _, procfs as _, prometheus_client as _,
    prost as _, prost_types as _, rustls as _, rustls_native_certs as _, rustls_pki_types as _,
    serde as _, serde_json as _, thiserror as _, tokio as _, tokio_rustls as _, toml as _,
    tonic as _, tracing as _, tracing_log as _, tracing_subscriber as _,
};

fn check_config(config: &Path, env: &[(&str, &str)], flags: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_collector-daemon"));
    command
        .args(["run", "--check-config", "--config"])
        .arg(config)
        .args(flags);
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("COLLECTOR_")) {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let out = command.output().expect("the daemon binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "exited_grace = 120\nmax_processes = 4096\nsocket = \"/run/file.sock\"\n",
    )
    .unwrap();
    let (ok, out, err) = check_config(
        &config,
        &[
            ("COLLECTOR_EXITED_GRACE", "30"),
            ("COLLECTOR_SOCKET", "/run/env.sock"),
        ],
        &["--socket", "/run/flag.sock"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("exited_grace: 30s"),
        "the environment beats the file: {out}"
    );
    assert!(
        out.contains("max_processes: 4096"),
        "the file beats the default: {out}"
    );
    assert!(
        out.contains("\"/run/flag.sock\""),
        "the flag beats both: {out}"
    );
}

#[test]
fn an_unknown_key_stops_the_daemon_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("collector.toml");
    std::fs::write(&config, "exited_grace = 120\nsockett = \"/run/x.sock\"\n").unwrap();
    let (ok, out, err) = check_config(&config, &[], &[]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("`sockett`") && err.contains("collector.toml"),
        "{err}"
    );
}
