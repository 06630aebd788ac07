//! Helpers shared by the per-file parsers: cgroupfs files are ASCII, one value per file
//! ("single value"), `key value` lines ("flat keyed") or `key k=v k=v` lines ("nested keyed"),
//! as Documentation/admin-guide/cgroup-v2.rst names the formats; v1 files use the same shapes.
//! Every parser is total: malformed input gives `None` for what it affects (logged at debug),
//! never a panic and never 0.

/// A limit that may be "max" (v2) or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    Value(u64),
}

impl Limit {
    /// The number, None when unlimited.
    #[must_use]
    pub fn value(self) -> Option<u64> {
        match self {
            Self::Unlimited => None,
            Self::Value(v) => Some(v),
        }
    }
}

/// A decimal u64 with surrounding whitespace (the trailing newline) allowed.
#[must_use]
pub fn parse_u64(text: &str) -> Option<u64> {
    let t = text.trim();
    // u64::from_str accepts a leading '+', which the kernel never writes.
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// A single-value file holding a number, logged when malformed.
#[must_use]
pub fn single_u64(file: &'static str, text: &str) -> Option<u64> {
    let v = parse_u64(text);
    if v.is_none() {
        tracing::debug!(file, text = text.trim(), "malformed value");
    }
    v
}

/// A single-value file holding "max" or a number (`pids.max`, `memory.max`, `memory.swap.max`).
#[must_use]
pub fn single_limit(file: &'static str, text: &str) -> Option<Limit> {
    if text.trim() == "max" {
        return Some(Limit::Unlimited);
    }
    single_u64(file, text).map(Limit::Value)
}

/// Calls `f(key, value)` for each `key value` line; a line whose value is not a u64 calls
/// `f(key, None)` (so the field stays None) and is logged. Blank lines are skipped.
pub fn flat_keyed(file: &'static str, text: &str, mut f: impl FnMut(&str, Option<u64>)) {
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let Some(key) = parts.next() else { continue };
        let value = match (parts.next(), parts.next()) {
            (Some(v), None) => parse_u64(v),
            _ => None,
        };
        if value.is_none() {
            tracing::debug!(file, line, "malformed line");
        }
        f(key, value);
    }
}

/// `MAJ:MIN` of a block device.
#[must_use]
pub fn parse_dev(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once(':')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// µs → ns without overflow (saturates; a counter that large is years of CPU).
#[must_use]
pub fn us_to_ns(us: u64) -> u64 {
    us.saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_values() {
        assert_eq!(parse_u64("123\n"), Some(123));
        assert_eq!(parse_u64(" 7 "), Some(7));
        assert_eq!(parse_u64("+1"), None);
        assert_eq!(parse_u64("-1"), None);
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("12a"), None);
        assert_eq!(parse_u64("18446744073709551616"), None);
        assert_eq!(single_limit("pids.max", "max\n"), Some(Limit::Unlimited));
        assert_eq!(single_limit("pids.max", "64\n"), Some(Limit::Value(64)));
        assert_eq!(single_limit("pids.max", "maxi\n"), None);
    }

    #[test]
    fn flat_keyed_lines() {
        let mut seen = Vec::new();
        flat_keyed("x", "a 1\nb two\n\nc 3 4\nd 5\n", |k, v| {
            seen.push((k.to_owned(), v));
        });
        assert_eq!(
            seen,
            vec![
                ("a".to_owned(), Some(1)),
                ("b".to_owned(), None),
                ("c".to_owned(), None),
                ("d".to_owned(), Some(5)),
            ]
        );
    }

    #[test]
    fn devices() {
        assert_eq!(parse_dev("254:0"), Some((254, 0)));
        assert_eq!(parse_dev("8:16"), Some((8, 16)));
        assert_eq!(parse_dev("8:"), None);
        assert_eq!(parse_dev("Total"), None);
        assert_eq!(parse_dev("a:1"), None);
    }
}
