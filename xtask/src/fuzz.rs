//! `cargo xtask fuzz`, and the short fuzzing pass of `cargo xtask test`: the cargo-fuzz
//! targets of `fuzz/` (libFuzzer, built by nightly with the address sanitizer), each run for a
//! fixed time from its corpus in `fuzz/corpus/<target>`, with executions, corpus size and
//! findings printed per target.
//!
//! New inputs go to a scratch corpus under `fuzz/target/`; only `cargo xtask fuzz` merges
//! those that reach new code into `fuzz/corpus/` (libFuzzer's `-merge=1`, on edges rather
//! than hit counts), so a test run never changes the repository. A crash fails the run and names the reproducer libFuzzer wrote to
//! `fuzz/artifacts/<target>/`.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    cmd::{Cmd, cargo, workspace_root},
    setup::is_not_found,
};

/// cargo-fuzz release installed when missing (0.13 drives libFuzzer through libfuzzer-sys
/// 0.4, the fuzz crate's dependency).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Seconds per target in `cargo xtask test`.
pub(crate) const TEST_SECONDS: u64 = 5;

/// What one target's run did.
struct Outcome {
    target: String,
    executions: Option<u64>,
    corpus: Option<String>,
    crash: Option<String>,
}

/// Builds the targets, runs `only` (or every target) for `seconds` each with `extra`
/// libFuzzer flags, then (when `merge`) adds what grew coverage to the repository's corpora.
pub(crate) fn fuzz(only: Option<&str>, seconds: u64, extra: &[String], merge: bool) -> Result<()> {
    crate::setup::setup()?;
    ensure_cargo_fuzz()?;
    let dir = workspace_root().join("fuzz");
    let mut targets = list_targets(&dir)?;
    if let Some(only) = only {
        if !targets.iter().any(|t| t == only) {
            bail!(
                "no fuzz target {only}; the targets are {}",
                targets.join(", ")
            );
        }
        targets.retain(|t| t == only);
    }
    let started = Instant::now();
    cargo_fuzz(&dir).arg("build").run()?;
    eprintln!("fuzz: built the targets in {:.0?}", started.elapsed());

    let mut outcomes = Vec::new();
    for target in &targets {
        outcomes.push(run_target(&dir, target, seconds, extra, merge)?);
    }
    eprintln!(
        "\nfuzz: {} target(s), {seconds} s each, {:.0?} in all (build included)",
        outcomes.len(),
        started.elapsed()
    );
    eprintln!(
        "{:<22} {:>12}  {:<24} findings",
        "target", "executions", "corpus"
    );
    for o in &outcomes {
        eprintln!(
            "{:<22} {:>12}  {:<24} {}",
            o.target,
            o.executions
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
            o.corpus.as_deref().unwrap_or("?"),
            o.crash.as_deref().unwrap_or("none"),
        );
    }
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.crash.is_some())
        .map(|o| o.target.as_str())
        .collect();
    if !crashed.is_empty() {
        bail!("fuzz targets crashed: {}", crashed.join(", "));
    }
    Ok(())
}

/// `cargo fuzz` on the nightly toolchain (it builds with `-Z` sanitizer flags), in `dir`.
fn cargo_fuzz(dir: &Path) -> Cmd {
    let mut cmd = Cmd::new("rustup");
    cmd.current_dir(dir.parent().unwrap_or(dir))
        .args(["run", "nightly", "cargo", "fuzz"]);
    cmd
}

fn list_targets(dir: &Path) -> Result<Vec<String>> {
    let listed = cargo_fuzz(dir).arg("list").read_stdout()?;
    Ok(listed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Runs one target: libFuzzer's log goes to `fuzz/target/logs/<target>.log`, its scratch
/// files to `fuzz/target/tmp/<target>` (removed after).
fn run_target(
    dir: &Path,
    target: &str,
    seconds: u64,
    extra: &[String],
    merge: bool,
) -> Result<Outcome> {
    let work = dir.join("target");
    let scratch_corpus = work.join("corpus").join(target);
    let seeds = dir.join("corpus").join(target);
    let tmp = work.join("tmp").join(target);
    let logs = work.join("logs");
    for d in [&scratch_corpus, &seeds, &tmp, &logs] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let log_path = logs.join(format!("{target}.log"));
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    eprintln!(
        "fuzz: {target} for {seconds} s (log: {})",
        log_path.display()
    );
    let status = cargo_fuzz(dir)
        .args(["run", target])
        .arg(&scratch_corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .args(extra)
        .env("TMPDIR", &tmp)
        .stderr(log.try_clone()?)
        .stdout(log)
        .status()?;
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let mut outcome = summarize(target, &text);
    if !status.success() && outcome.crash.is_none() {
        outcome.crash = Some(format!("exit {status}, see {}", log_path.display()));
    }
    if let Some(crash) = &outcome.crash {
        eprintln!("fuzz: {target} CRASHED: {crash}");
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        for line in tail.into_iter().rev() {
            eprintln!("  | {line}");
        }
    } else if merge {
        cargo_fuzz(dir)
            .args(["run", target])
            .arg(&seeds)
            .arg(&scratch_corpus)
            // Edges only, not hit counts: keeps the corpora in the repository small.
            .args(["--", "-merge=1", "-use_counters=0"])
            .stderr(fs::File::create(logs.join(format!("{target}.merge.log")))?)
            .env("TMPDIR", &tmp)
            .run()?;
    }
    let _ = fs::remove_dir_all(&tmp);
    Ok(outcome)
}

/// Executions, the final corpus line and the reproducer from libFuzzer's log.
fn summarize(target: &str, log: &str) -> Outcome {
    let stat = |name: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    let corpus = log
        .lines()
        .rev()
        .find_map(|l| l.split_once(" corp: ").map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|c| format!("{c} (units/bytes)"));
    let crash = log
        .lines()
        .find_map(|l| {
            l.split_once("Test unit written to ")
                .map(|(_, p)| p.trim().to_owned())
        })
        // libFuzzer also saves its slowest input (`slow-unit-*`, over 10 s): worth a look,
        // not a failure.
        .filter(|path| !file_name(path).starts_with("slow-unit-"))
        .map(|path| reproducer(target, &path));
    Outcome {
        target: target.to_owned(),
        executions: stat("stat::number_of_executed_units:"),
        corpus,
        crash,
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The crash file and the command that replays it.
fn reproducer(target: &str, path: &str) -> String {
    let path = PathBuf::from(path);
    let shown = path
        .strip_prefix(workspace_root())
        .unwrap_or(&path)
        .display()
        .to_string();
    format!("{shown} (replay: rustup run nightly cargo fuzz run {target} {shown})")
}

/// Installs cargo-fuzz [`CARGO_FUZZ_VERSION`] unless that version is on PATH.
fn ensure_cargo_fuzz() -> Result<()> {
    let wanted = format!("cargo-fuzz {CARGO_FUZZ_VERSION}");
    let found = match Cmd::new("cargo-fuzz").arg("--version").probe() {
        Ok(out) if out.status.success() => {
            Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
        Ok(_) => None,
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(e),
    };
    if found.as_deref() != Some(wanted.as_str()) {
        eprintln!("cargo-fuzz: found {found:?}, need {CARGO_FUZZ_VERSION}");
        Cmd::new(cargo())
            .args([
                "install",
                &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"),
                "--locked",
            ])
            .run()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::summarize;

    #[test]
    fn a_log_gives_executions_corpus_and_the_reproducer() {
        let log = "#1024 pulse  cov: 10 ft: 12 corp: 5/100b lim: 4 exec/s: 0 rss: 30Mb\n\
                   #2048 DONE   cov: 11 ft: 13 corp: 6/120b lim: 4 exec/s: 0 rss: 30Mb\n\
                   stat::number_of_executed_units: 2048\n";
        let o = summarize("t", log);
        assert_eq!(o.executions, Some(2048));
        assert_eq!(o.corpus.as_deref(), Some("6/120b (units/bytes)"));
        assert!(o.crash.is_none());
        let slow = summarize(
            "t",
            "Slowest unit: 10 s:\nTest unit written to /x/slow-unit-abc\n",
        );
        assert!(slow.crash.is_none());
        let crashed = summarize("t", "==1== ERROR\nTest unit written to /x/crash-abc\n");
        assert!(crashed.crash.unwrap().starts_with("/x/crash-abc (replay:"));
    }
}
