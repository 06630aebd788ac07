//! The two Prometheus text formats, chosen by the scraper's `Accept` header: the classic text
//! format 0.0.4 (what Prometheus 2.x asks for first unless told otherwise, and what
//! `promtool check metrics` reads) and `OpenMetrics` 1.0.0. They differ in how a counter
//! family is named (`x_total` in 0.0.4, `x` with samples `x_total` in `OpenMetrics`) and in
//! the `# EOF` trailer.
//!
//! The container families are written here directly rather than through prometheus-client's
//! encoder: a scrape of 1,000 containers writes ~40,000 samples, and rendering each
//! container's six to a dozen labels once and reusing them for every family keeps the
//! encoding a small part of the scrape (see `docs/metrics.md`). The daemon's own health
//! families stay on prometheus-client, which speaks `OpenMetrics` only; [`openmetrics_to_text`]
//! rewrites them for 0.0.4.
use std::fmt::Write as _;

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header prefers: `OpenMetrics` when it is acceptable with a
    /// quality at least that of plain text (Prometheus sends
    /// `application/openmetrics-text;version=1.0.0,...;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1`
    /// by default), else text 0.0.4 (also when there is no header).
    pub fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Self::Text;
        };
        let (mut openmetrics, mut text) = (None::<f32>, None::<f32>);
        for range in accept.split(',') {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or("").to_ascii_lowercase();
            let mut quality = 1.0_f32;
            for param in params {
                if let Some(q) = param.strip_prefix("q=") {
                    quality = q.trim().parse().unwrap_or(0.0);
                }
            }
            let slot = match media.as_str() {
                "application/openmetrics-text" => &mut openmetrics,
                "text/plain" | "text/*" | "*/*" => &mut text,
                _ => continue,
            };
            *slot = Some(slot.map_or(quality, |q| q.max(quality)));
        }
        match (openmetrics, text) {
            (Some(om), text) if om > 0.0 && om >= text.unwrap_or(0.0) => Self::OpenMetrics,
            _ => Self::Text,
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A sample's value: counts stay exact integers, durations are seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl Value {
    /// Nanoseconds as seconds.
    pub fn seconds_from_ns(ns: u64) -> Self {
        #[expect(
            clippy::cast_precision_loss,
            reason = "ns counters below 2^53 (104 days of CPU) are exact; beyond, 1 ns in 2^53 is lost"
        )]
        Self::Float(ns as f64 / 1e9)
    }
}

/// Writes families into a string in one format.
pub struct Writer<'a> {
    out: &'a mut String,
    format: Format,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut String, format: Format) -> Self {
        Self { out, format }
    }

    /// Starts family `name` (its samples' name: counters end in `_total`).
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let (descriptor, kind_name) = match (kind, self.format) {
            (Kind::Counter, Format::OpenMetrics) => {
                (name.strip_suffix("_total").unwrap_or(name), "counter")
            }
            (Kind::Counter, Format::Text) => (name, "counter"),
            (Kind::Gauge, _) => (name, "gauge"),
        };
        let _ = writeln!(self.out, "# HELP {descriptor} {help}");
        let _ = writeln!(self.out, "# TYPE {descriptor} {kind_name}");
    }

    /// One sample of family `name`: `labels` is the rendered label list without braces
    /// (see [`push_label`]), `extra` more pairs after it.
    pub fn sample(&mut self, name: &str, labels: &str, extra: &[(&str, &str)], value: Value) {
        let out = &mut *self.out;
        out.push_str(name);
        out.push('{');
        out.push_str(labels);
        for (i, (key, val)) in extra.iter().enumerate() {
            if i > 0 || !labels.is_empty() {
                out.push(',');
            }
            push_label(out, key, val);
        }
        out.push_str("} ");
        match value {
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Float(x) => {
                let _ = write!(out, "{x}");
            }
        }
        out.push('\n');
    }

    /// Ends the exposition (`# EOF` for `OpenMetrics`).
    pub fn finish(self) {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
    }
}

/// Appends `key="value"` with the value escaped as both formats require (`\\`, `\"`, `\n`).
pub fn push_label(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A runtime label's key as a Prometheus label name: `container_label_` and the key with
/// every character outside `[a-zA-Z0-9_]` replaced by `_` (as cAdvisor does).
pub fn label_name(key: &str) -> String {
    let mut name = String::with_capacity("container_label_".len() + key.len());
    name.push_str("container_label_");
    name.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    name
}

/// prometheus-client's `OpenMetrics` text as text 0.0.4: counter families take their samples'
/// `_total` name in `# HELP` and `# TYPE`, `# UNIT` and `# EOF` go, and types 0.0.4 lacks
/// become `untyped`.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut pending_help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name, help));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                _ => (name.to_owned(), "untyped"),
            };
            if let Some((help_name, help)) = pending_help.take() {
                let help_name = if help_name == rest.split(' ').next().unwrap_or("") {
                    name.as_str()
                } else {
                    help_name
                };
                let _ = writeln!(out, "# HELP {help_name} {help}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
        } else {
            if let Some((name, help)) = pending_help.take() {
                let _ = writeln!(out, "# HELP {name} {help}");
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The `OpenMetrics` text without its `# EOF` trailer, for more families to follow.
pub fn strip_eof(openmetrics: &str) -> &str {
    openmetrics
        .strip_suffix("# EOF\n")
        .or_else(|| openmetrics.strip_suffix("# EOF"))
        .unwrap_or(openmetrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_default_accept_header_gets_openmetrics() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; version=1.0.0")),
            Format::OpenMetrics
        );
    }

    #[test]
    fn plain_text_is_the_default() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
        assert_eq!(Format::negotiate(Some("garbage;;;,")), Format::Text);
        // Prometheus with `scrape_protocols` preferring text.
        assert_eq!(
            Format::negotiate(Some(
                "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5"
            )),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
    }

    #[test]
    fn counters_are_named_per_format() {
        for (format, expected) in [
            (
                Format::Text,
                "# HELP c_total Help.\n# TYPE c_total counter\nc_total{id=\"/a\",interface=\"eth0\"} 5\n# HELP g Gauge.\n# TYPE g gauge\ng{id=\"/a\"} 0.25\n",
            ),
            (
                Format::OpenMetrics,
                "# HELP c Help.\n# TYPE c counter\nc_total{id=\"/a\",interface=\"eth0\"} 5\n# HELP g Gauge.\n# TYPE g gauge\ng{id=\"/a\"} 0.25\n# EOF\n",
            ),
        ] {
            let mut out = String::new();
            let mut w = Writer::new(&mut out, format);
            w.family("c_total", "Help.", Kind::Counter);
            w.sample(
                "c_total",
                "id=\"/a\"",
                &[("interface", "eth0")],
                Value::Int(5),
            );
            w.family("g", "Gauge.", Kind::Gauge);
            w.sample("g", "id=\"/a\"", &[], Value::Float(0.25));
            w.finish();
            assert_eq!(out, expected, "{format:?}");
        }
    }

    #[test]
    fn label_values_are_escaped_and_names_sanitized() {
        let mut out = String::new();
        push_label(&mut out, "name", "a\"b\\c\nd");
        assert_eq!(out, r#"name="a\"b\\c\nd""#);
        assert_eq!(
            label_name("io.kubernetes.pod-name/x"),
            "container_label_io_kubernetes_pod_name_x"
        );
        assert_eq!(label_name("é"), "container_label__");
    }

    #[test]
    fn seconds_keep_their_fraction() {
        assert_eq!(Value::seconds_from_ns(1_500_000_000), Value::Float(1.5));
        let mut out = String::new();
        Writer::new(&mut out, Format::Text).sample("x", "", &[], Value::seconds_from_ns(1));
        assert_eq!(out, "x{} 0.000000001\n");
    }

    #[test]
    fn openmetrics_health_text_becomes_text_004() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{code=\"200\"} 3\n# HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n# UNIT a_up seconds\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{code=\"200\"} 3\n# HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n"
        );
        assert!(strip_eof(om).ends_with("a_up seconds\n"));
    }
}
