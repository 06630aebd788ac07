//! Pressure stall information: `cpu.pressure`, `memory.pressure`, `io.pressure` of a cgroup2
//! directory (Documentation/accounting/psi.rst). Lines are
//! `some|full avg10=F avg60=F avg300=F total=U` with `total` in µs. They are cgroup core files:
//! present in every non-root cgroup2 directory whether or not controllers are enabled (so also in
//! the controller-less hierarchy of a hybrid host), as long as PSI is on (`CONFIG_PSI`, no `psi=0`).
//! The `full` line of `cpu.pressure` exists since kernel 5.13.

use super::parse::parse_u64;

/// One `some` or `full` line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PressureLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Cumulative stall time, µs.
    pub total_us: u64,
}

/// A `*.pressure` file.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pressure {
    pub some: Option<PressureLine>,
    pub full: Option<PressureLine>,
}

impl Pressure {
    /// Parses the file; a malformed line leaves its half None.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            let mut fields = line.split_ascii_whitespace();
            let slot = match fields.next() {
                Some("some") => &mut out.some,
                Some("full") => &mut out.full,
                Some(_) => {
                    tracing::debug!(line, "unknown pressure line");
                    continue;
                }
                None => continue,
            };
            *slot = parse_line(fields);
            if slot.is_none() {
                tracing::debug!(line, "malformed pressure line");
            }
        }
        out
    }

    /// The `some` total in ns: Datadog's `PartialStallTime`.
    #[must_use]
    pub fn some_total_ns(&self) -> Option<u64> {
        self.some.map(|l| super::parse::us_to_ns(l.total_us))
    }

    /// The `full` total in ns: time all non-idle tasks were stalled at once.
    #[must_use]
    pub fn full_total_ns(&self) -> Option<u64> {
        self.full.map(|l| super::parse::us_to_ns(l.total_us))
    }
}

fn parse_line<'a>(fields: impl Iterator<Item = &'a str>) -> Option<PressureLine> {
    let (mut avg10, mut avg60, mut avg300, mut total_us) = (None, None, None, None);
    for field in fields {
        let (key, value) = field.split_once('=')?;
        match key {
            "avg10" => avg10 = Some(parse_avg(value)?),
            "avg60" => avg60 = Some(parse_avg(value)?),
            "avg300" => avg300 = Some(parse_avg(value)?),
            "total" => total_us = Some(parse_u64(value)?),
            // Newer kernels may add fields; they do not make the line unusable.
            _ => {}
        }
    }
    Some(PressureLine {
        avg10: avg10?,
        avg60: avg60?,
        avg300: avg300?,
        total_us: total_us?,
    })
}

fn parse_avg(value: &str) -> Option<f64> {
    // The kernel prints "%lu.%02lu": digits, a dot, digits; nothing else is accepted.
    let ok = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if ok { value.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn some_and_full() {
        // Real cpu.pressure of this machine's unified root (kernel 6.18).
        let p = Pressure::parse(
            "some avg10=0.41 avg60=1.09 avg300=3.81 total=272680290\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        );
        assert_eq!(
            p.some,
            Some(PressureLine {
                avg10: 0.41,
                avg60: 1.09,
                avg300: 3.81,
                total_us: 272_680_290
            })
        );
        assert_eq!(p.full.map(|l| l.total_us), Some(0));
        assert_eq!(p.some_total_ns(), Some(272_680_290_000));
    }

    #[test]
    fn only_some_before_5_13() {
        let p = Pressure::parse("some avg10=1.00 avg60=2.00 avg300=3.00 total=42\n");
        assert_eq!(p.some_total_ns(), Some(42_000));
        assert_eq!(p.full, None);
    }

    #[test]
    fn malformed_lines_are_none() {
        for text in [
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=-5\n",
            "some avg10=0.00 avg60=0.00 avg300=0.00\n",
            "some avg10=x avg60=0.00 avg300=0.00 total=5\n",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total\n",
            "",
            "garbage\n",
        ] {
            assert_eq!(Pressure::parse(text).some_total_ns(), None, "{text:?}");
        }
        // A malformed "some" does not hide a good "full".
        let p = Pressure::parse("some total=x\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n");
        assert_eq!(p.some, None);
        assert_eq!(p.full.map(|l| l.total_us), Some(7));
    }
}
