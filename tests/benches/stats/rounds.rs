//! Rounds.

use crate::{
    Config,
    checks::{Answer, check, wait_covered},
    collect::{Build, Measured, Sample, Via, row_name},
    fleet::Fleet,
    floor::{Floor, FloorRow},
};

/// One row of the table.
pub(crate) struct Row {
    pub size: usize,
    pub build: Build,
    pub via: Via,
    pub samples: Vec<Sample>,
    pub answer: Answer,
    pub body_bytes: usize,
}

impl Row {
    pub(crate) fn name(&self) -> &'static str {
        row_name(self.build, self.via)
    }

    /// Whether this is the row of `size` containers collected by `via` of `build`.
    pub(crate) fn is(&self, size: usize, build: Build, via: Via) -> bool {
        self.size == size && self.build == build && self.via == via
    }
}

/// Measures every path with the first `size` containers live: a checked warm-up each, then
/// `config.rounds` rounds of `per_round` requests per path, taking turns request by request,
/// the order rotating every round; and before each turn one pass of the [`Floor`].
pub(crate) fn measure_size(
    fleet: &Fleet,
    paths: &[Measured],
    size: usize,
    per_round: usize,
    config: &Config,
) -> (Vec<Row>, FloorRow) {
    let ids = &fleet.ids[..size];
    let mut rows: Vec<Row> = paths
        .iter()
        .map(|p| Row {
            size,
            build: p.build,
            via: p.via,
            samples: Vec::new(),
            answer: wait_covered(p, ids),
            body_bytes: 0,
        })
        .collect();
    let floor = Floor::open(fleet, size);
    floor.sample(); // warm-up
    let mut floor_samples = Vec::new();
    let mut bodies: Vec<Vec<u8>> = paths.iter().map(|_| Vec::new()).collect();
    for round in 0..config.rounds {
        for _ in 0..per_round {
            floor_samples.push(floor.sample());
            for turn in 0..paths.len() {
                let i = (turn + round) % paths.len();
                let sample = paths[i].collect(&mut bodies[i]);
                // Outside the clock.
                if let Err(e) = check(&bodies[i], ids, paths[i].via) {
                    panic!(
                        "{} with {size} containers: GET {}: {e}",
                        paths[i].name(),
                        paths[i].via.path()
                    );
                }
                rows[i].samples.push(sample);
                rows[i].body_bytes = bodies[i].len();
            }
        }
    }
    (
        rows,
        FloorRow {
            size,
            files: floor.files.len(),
            samples: floor_samples,
        },
    )
}
