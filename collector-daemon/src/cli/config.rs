//! `run`'s configuration file: a TOML table whose keys are `run`'s flags with underscores
//! (`socket = "/run/collector.sock"`, `exited_grace = 120`, `no_ebpf = true`,
//! `container_labels = ["app", "team"]`, ...). The file is `--config FILE`
//! (`COLLECTOR_CONFIG`), else [`DEFAULT_CONFIG`] when it exists.
//!
//! Where a setting comes from, strongest first: a flag, its `COLLECTOR_*` environment
//! variable, the file, the default. The file's values go through the same parsers and range
//! checks as flags; a key that is no flag of `run`, or a value of the wrong type, is an error
//! that names the key and the file.
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use clap::{
    ArgAction, ArgMatches, CommandFactory as _, FromArgMatches as _, Parser as _,
    parser::ValueSource,
};

use super::args::Cli;

/// The configuration file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG: &str = "/etc/collector/config.toml";

/// List flags that took one value before they took a list: a string is a list of one
/// (`podman_socket = "/run/podman/podman.sock"`).
const ONE_OR_MORE: &[&str] = &["podman_socket"];

/// `run`'s flags that a file cannot set: the file's own path.
const NOT_IN_FILE: &[&str] = &["config", "check_config"];

/// Why the configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("reading the configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("the configuration file {} is not valid TOML: {source}", path.display())]
    Syntax {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// A key that is no flag of `run`.
    #[error("unknown key `{key}` in the configuration file {}; known keys: {known}", path.display())]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    /// A value of the wrong type for its key.
    #[error("`{key}` in the configuration file {} must be {expected}", path.display())]
    Type {
        path: PathBuf,
        key: String,
        expected: &'static str,
    },
    /// A value the flag's own parser refuses.
    #[error("in the configuration file {}: {message}", path.display())]
    Value { path: PathBuf, message: String },
}

/// The command line `argv` (program name first) with `run`'s configuration file applied:
/// clap's own error (help and version included) when the command line is wrong, else the
/// parsed command line, or why the file cannot be used.
pub fn parse(argv: Vec<OsString>) -> Result<Result<Cli, ConfigError>, clap::Error> {
    let matches = Cli::command().try_get_matches_from(&argv)?;
    let Some(("run", run)) = matches.subcommand() else {
        return Cli::from_arg_matches(&matches).map(Ok);
    };
    let Some(path) = config_path(run) else {
        return Cli::from_arg_matches(&matches).map(Ok);
    };
    Ok(with_file(argv, run, &path))
}

/// `--config`, else the default file when it exists.
fn config_path(run: &ArgMatches) -> Option<PathBuf> {
    run.get_one::<PathBuf>("config").cloned().or_else(|| {
        let default = Path::new(DEFAULT_CONFIG);
        default.exists().then(|| default.to_owned())
    })
}

/// `argv` re-parsed with the file's settings inserted after `run`, for every flag that neither
/// the command line nor the environment sets.
fn with_file(argv: Vec<OsString>, run: &ArgMatches, path: &Path) -> Result<Cli, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| ConfigError::Syntax {
        path: path.to_owned(),
        source,
    })?;
    let mut inserted = Vec::new();
    for (key, value) in &table {
        let flag = run_flag(path, key)?;
        let set_outside = matches!(
            run.value_source(key),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if !set_outside {
            inserted.extend(flag_words(path, key, &flag, value)?);
        }
    }
    let at = argv
        .iter()
        .position(|word| word == "run")
        .map_or(argv.len(), |i| i + 1);
    let mut merged = argv;
    merged.splice(at..at, inserted);
    Cli::try_parse_from(merged).map_err(|e| ConfigError::Value {
        path: path.to_owned(),
        // clap's first line says what is wrong; the rest is usage for the command line.
        message: e
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_owned(),
    })
}

/// `run`'s flag named `key` (its id: the name with underscores), or the unknown-key error.
fn run_flag(path: &Path, key: &str) -> Result<clap::Arg, ConfigError> {
    let command = Cli::command();
    let run = command
        .find_subcommand("run")
        .expect("the command line has a run subcommand");
    let settable = |arg: &&clap::Arg| {
        arg.get_long().is_some() && !NOT_IN_FILE.contains(&arg.get_id().as_str())
    };
    if let Some(arg) = run
        .get_arguments()
        .filter(settable)
        .find(|arg| arg.get_id() == key)
    {
        return Ok(arg.clone());
    }
    let known: Vec<&str> = run
        .get_arguments()
        .filter(settable)
        .filter(|arg| !arg.is_hide_set())
        .map(|arg| arg.get_id().as_str())
        .collect();
    Err(ConfigError::UnknownKey {
        path: path.to_owned(),
        key: key.to_owned(),
        known: known.join(", "),
    })
}

/// The command-line words that set `flag` to `value`.
fn flag_words(
    path: &Path,
    key: &str,
    flag: &clap::Arg,
    value: &toml::Value,
) -> Result<Vec<OsString>, ConfigError> {
    let long = format!("--{}", flag.get_long().expect("settable flags are long"));
    let wrong = |expected| ConfigError::Type {
        path: path.to_owned(),
        key: key.to_owned(),
        expected,
    };
    match flag.get_action() {
        ArgAction::SetTrue => match value {
            toml::Value::Boolean(true) => Ok(vec![long.into()]),
            toml::Value::Boolean(false) => Ok(Vec::new()),
            _ => Err(wrong("true or false")),
        },
        ArgAction::Append => match value {
            toml::Value::Array(items) => items
                .iter()
                .map(|item| scalar(item).map(|v| format!("{long}={v}").into()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| wrong("an array of strings")),
            toml::Value::String(one) if ONE_OR_MORE.contains(&key) => {
                Ok(vec![format!("{long}={one}").into()])
            }
            _ => Err(wrong("an array of strings")),
        },
        _ => scalar(value)
            .map(|v| vec![format!("{long}={v}").into()])
            .ok_or_else(|| wrong("a string or a number")),
    }
}

/// A string or number as a flag's value.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cli::Command;

    /// `run`'s settings from `args` after `collector-daemon run`, with `file` as the
    /// configuration file.
    fn run_with(file: &str, args: &[&str]) -> Result<crate::daemon::RunOptions, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, file).unwrap();
        let mut words: Vec<OsString> = vec!["collector-daemon".into(), "run".into()];
        words.push("--config".into());
        words.push(path.into());
        words.extend(args.iter().map(OsString::from));
        let cli = parse(words).expect("the command line parses")?;
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        Ok(run.options())
    }

    #[test]
    fn the_file_sets_what_flags_leave_unset_and_flags_win() {
        let file = r#"
            exited_grace = 120
            metrics_addr = "none"
            no_pin = true
            no_ebpf = false
            container_labels = ["app", "team"]
            socket = "/run/from-file.sock"
        "#;
        let options = run_with(file, &["--socket", "/run/from-flag.sock"]).unwrap();
        assert_eq!(options.exited_grace, Duration::from_mins(2));
        assert_eq!(options.metrics_addr, None);
        assert_eq!(options.pin_dir, None);
        assert!(!options.no_ebpf);
        assert_eq!(options.container_labels, ["app", "team"]);
        assert_eq!(options.socket, Path::new("/run/from-flag.sock"));
        // Without the file, the defaults.
        let defaults = run_with("", &[]).unwrap();
        assert_eq!(defaults.exited_grace, Duration::from_mins(1));
        assert!(defaults.pin_dir.is_some());
    }

    #[test]
    fn an_unknown_key_names_the_key_and_the_file() {
        let err = run_with("exited_grac = 5\n", &[]).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "exited_grac"));
        assert!(
            text.contains("`exited_grac`") && text.contains("config.toml"),
            "{text}"
        );
        assert!(
            text.contains("exited_grace"),
            "known keys are listed: {text}"
        );
        // The file's own path and the hidden ones are not settings of the file.
        assert!(matches!(
            run_with("config = \"x\"\n", &[]),
            Err(ConfigError::UnknownKey { .. })
        ));
        assert!(!text.contains("proc_root"), "{text}");
    }

    #[test]
    fn wrong_types_and_values_are_errors_naming_the_file() {
        let err = run_with("no_ebpf = \"yes\"\n", &[]).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Type {
                    expected: "true or false",
                    ..
                }
            ),
            "{err}"
        );
        let err = run_with("container_labels = \"app\"\n", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Type { .. }), "{err}");
        let err = run_with("socket = 1.5\n", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Type { .. }), "{err}");
        // The flag's own range check applies.
        let err = run_with("max_processes = 5\n", &[]).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ConfigError::Value { .. }), "{text}");
        assert!(
            text.contains("config.toml") && text.contains("max-processes"),
            "{text}"
        );
        let err = run_with("exited_grace = \n", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }

    #[test]
    fn podman_sockets_are_one_path_or_a_list() {
        let one = run_with("podman_socket = \"/srv/a.sock\"\n", &[]).unwrap();
        assert_eq!(one.podman_sockets.fixed, [Path::new("/srv/a.sock")]);
        assert_eq!(one.podman_sockets.discover_under, None);
        let list = run_with("podman_socket = [\"/srv/a.sock\", \"auto\"]\n", &[]).unwrap();
        assert_eq!(list.podman_sockets.fixed.len(), 2);
        let flags = run_with("", &["--podman-socket", "/a.sock,/b.sock"]).unwrap();
        assert_eq!(
            flags.podman_sockets.fixed,
            [Path::new("/a.sock"), Path::new("/b.sock")]
        );
        let off = run_with("podman_socket = \"none\"\n", &[]).unwrap();
        assert!(off.podman_sockets.is_off());
        let err = run_with("podman_socket = \"relative.sock\"\n", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Value { .. }), "{err}");
    }

    #[test]
    fn a_missing_file_is_an_error_and_query_ignores_files() {
        let argv = [
            "collector-daemon",
            "run",
            "--config",
            "/nonexistent/collector.toml",
        ];
        let err = parse(argv.iter().map(OsString::from).collect())
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        let argv = ["collector-daemon", "query", "containers"];
        assert!(matches!(
            parse(argv.iter().map(OsString::from).collect()),
            Ok(Ok(Cli {
                command: Command::Query(_)
            }))
        ));
    }
}
