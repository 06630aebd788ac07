//! Rounds.

use crate::Config;
use crate::checks::{Answer, check, wait_covered};
use crate::collect::{Measured, Sample, Via};
use crate::fleet::Fleet;
use crate::floor::{Floor, FloorRow};

/// One row of the table.
pub(crate) struct Row {
    pub size: usize,
    pub via: Via,
    pub samples: Vec<Sample>,
    pub answer: Answer,
    pub body_bytes: usize,
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
                        paths[i].via.name(),
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
