//! Docker containers for tests, run from the test image (`COLLECTOR_TEST_IMAGE`, built by
//! `cargo xtask test` from busybox-static since no registry is reachable) and removed with
//! `docker rm -f` when the guard drops. With the cgroupfs driver on this host's hybrid layout a
//! container's processes sit in `/docker/<64-hex id>` in every hierarchy.

use std::{
    process::{Command, Output, Stdio},
    sync::OnceLock,
};

/// The image used when `COLLECTOR_TEST_IMAGE` is unset.
pub const DEFAULT_IMAGE: &str = "collector-test-busybox:latest";

/// The label every test container carries, to find leftovers (`docker ps -af label=...`).
pub const LABEL: &str = "collector-test=1";

/// The test image: `COLLECTOR_TEST_IMAGE`, else [`DEFAULT_IMAGE`].
#[must_use]
pub fn image() -> String {
    std::env::var("COLLECTOR_TEST_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_owned())
}

/// Whether a Docker daemon answers and has the test image (checked once per process).
#[must_use]
pub fn docker_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let quiet = |args: &[&str]| {
            Command::new("docker")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        quiet(&["info"]) && quiet(&["image", "inspect", &image()])
    })
}

/// Runs `docker args...`, panicking with its stderr unless it succeeds; returns trimmed stdout.
fn docker(args: &[&str]) -> String {
    let output = docker_output(args);
    assert!(
        output.status.success(),
        "docker {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running docker {args:?}: {e}"))
}

/// A running container, removed (`docker rm -f`) on drop.
#[derive(Debug)]
pub struct Container {
    id: String,
    name: String,
}

impl Container {
    /// `docker run -d --name <name_prefix>-<pid>-<n> <image> args...`: `args` is the command
    /// run in the image; empty means `sleep 86400`, a container that just stays up.
    #[must_use]
    pub fn run(name_prefix: &str, args: &[&str]) -> Self {
        Self::run_with_options(name_prefix, &[], args)
    }

    /// As [`Container::run`] with `docker run` options (`--memory 64m`, `--label k=v`, ...)
    /// placed before the image.
    #[must_use]
    pub fn run_with_options(name_prefix: &str, options: &[&str], args: &[&str]) -> Self {
        let command: &[&str] = if args.is_empty() {
            &["sleep", "86400"]
        } else {
            args
        };
        Self::run_image(name_prefix, options, &image(), command)
    }

    /// `docker run -d --name <name_prefix>-<pid>-<n> options... <image> args...`: any image,
    /// `args` as given (after the image's entrypoint).
    #[must_use]
    pub fn run_image(name_prefix: &str, options: &[&str], image: &str, args: &[&str]) -> Self {
        let name = format!(
            "{name_prefix}-{}-{}",
            std::process::id(),
            super::next_serial()
        );
        let mut command_line = vec!["run", "-d", "--name", &name, "--label", LABEL];
        command_line.extend_from_slice(options);
        command_line.push(image);
        command_line.extend_from_slice(args);
        let output = docker_output(&command_line);
        if !output.status.success() {
            // `docker run` can fail after creating the container: remove it by name.
            let _ = docker_output(&["rm", "-f", &name]);
            panic!(
                "docker {command_line:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let container = Self { id, name };
        assert!(
            container.id.len() == 64 && container.id.bytes().all(|b| b.is_ascii_hexdigit()),
            "docker run printed {:?}, not a container id",
            container.id
        );
        container
    }

    /// The full 64-hex container id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The unique name given at `run`.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `docker inspect -f <format>`, trimmed.
    #[must_use]
    pub fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "-f", format, &self.id])
    }

    /// The host PID of the container's main process (`{{.State.Pid}}`); 0 once it stopped.
    #[must_use]
    pub fn main_pid(&self) -> u32 {
        let pid = self.inspect("{{.State.Pid}}");
        pid.parse()
            .unwrap_or_else(|_| panic!("docker inspect gave pid {pid:?} for {}", self.name))
    }

    /// `docker exec -d <id> cmd...`: starts `cmd` in the container and returns at once.
    pub fn exec_detached(&self, cmd: &[&str]) {
        let mut argv = vec!["exec", "-d", self.id.as_str()];
        argv.extend_from_slice(cmd);
        docker(&argv);
    }

    /// `docker exec <id> cmd...`, waiting for it; returns its output whatever its status.
    #[must_use]
    pub fn exec(&self, cmd: &[&str]) -> Output {
        let mut argv = vec!["exec", self.id.as_str()];
        argv.extend_from_slice(cmd);
        docker_output(&argv)
    }

    /// What the container printed so far (`docker logs`, stdout and stderr).
    #[must_use]
    pub fn logs(&self) -> String {
        let output = docker_output(&["logs", &self.id]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// The host PIDs of every process in the container (`docker top <id> -eo pid`).
    #[must_use]
    pub fn top_pids(&self) -> Vec<u32> {
        docker(&["top", &self.id, "-eo", "pid"])
            .lines()
            .skip(1)
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let output = docker_output(&["rm", "-f", &self.id]);
        if !output.status.success() {
            eprintln!(
                "warning: docker rm -f {} failed: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Container, docker_available, docker_output};
    use crate::support::{is_root, process::cgroup_v2_path, require};

    #[test]
    fn runs_inspects_and_removes_a_container() {
        if !require(
            "root and a Docker daemon with the test image",
            is_root() && docker_available(),
        ) {
            return;
        }
        let container = Container::run("support-selftest", &[]);
        let id = container.id().to_owned();
        let pid = container.main_pid();
        assert!(pid > 1);
        assert!(
            cgroup_v2_path(pid).unwrap().contains(&id),
            "pid {pid} is not in a cgroup of {id}"
        );
        assert_eq!(container.top_pids(), vec![pid]);

        container.exec_detached(&["sleep", "300"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let pids = loop {
            let pids = container.top_pids();
            if pids.len() == 2 || Instant::now() > deadline {
                break pids;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(pids.len(), 2, "{pids:?}");
        assert!(pids.contains(&pid));

        let out = container.exec(&["cat", "/proc/1/comm"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sleep");

        drop(container);
        assert!(
            !docker_output(&["inspect", &id]).status.success(),
            "{id} still exists"
        );
    }
}
