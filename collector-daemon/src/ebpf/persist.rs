//! What a restarted daemon may reuse of the pins an earlier one left: the definitions of the
//! maps this build creates (read from its own object, with the loader's size overrides),
//! their comparison with the kernel's description of each pinned map, the layout version
//! recorded beside them, and the stamp that says whether the pinned links run this build's
//! programs.
//!
//! The kernel keeps a pinned map exactly as it was created (type, key and value sizes,
//! capacity, flags are fixed for its life), and aya opens a pin by path without comparing
//! anything (`MapData::create_pinned_by_name`), so the comparison is made here, before load.
use std::{collections::HashMap, path::Path};

use aya::maps::MapInfo;
use collector_common::{
    names::{
        AYA_LOGS_MAP, COUNTERS_MAP, EVENTS_MAP, IO_COUNTERS_MAP, NET_COUNTERS_MAP, PIN_STATE_MAP,
        PROCESSES_MAP,
    },
    persist::{MAP_LAYOUT_VERSION, PinState},
};

use super::pin::{IO_COUNTERS_PIN_NAME, NET_COUNTERS_PIN_NAME, PROCESSES_PIN_NAME};

/// File name of the pinned `PIN_STATE` map.
pub const PIN_STATE_PIN_NAME: &str = "pin_state";

/// The maps that outlive a daemon, with their pin names: the process map (read by other
/// eBPF tools as `processes`), the event ring buffer (the events of processes born and gone
/// while no daemon ran), the programs' counters, the usage counters, aya-log's ring buffer
/// (its programs keep logging into it) and the record of what they are. The cgroup walk's
/// maps are scratch space of one walk and are created afresh each start.
pub const PERSISTENT_MAPS: [(&str, &str); 7] = [
    (PROCESSES_MAP, PROCESSES_PIN_NAME),
    (EVENTS_MAP, "events"),
    (COUNTERS_MAP, "counters"),
    (NET_COUNTERS_MAP, NET_COUNTERS_PIN_NAME),
    (IO_COUNTERS_MAP, IO_COUNTERS_PIN_NAME),
    (AYA_LOGS_MAP, "aya_logs"),
    (PIN_STATE_MAP, PIN_STATE_PIN_NAME),
];

/// What a map is created with, as the kernel reports it back (`bpf_map_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity (bytes for a ring buffer).
    pub max_entries: u32,
    /// `BPF_F_*` creation flags.
    pub flags: u32,
}

impl MapSpec {
    /// What the kernel says of an existing map.
    pub fn of(info: &MapInfo) -> Self {
        Self {
            map_type: info.map_type().map_or(u32::MAX, |t| t as u32),
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
            flags: info.map_flags(),
        }
    }

    /// How `found` differs from `self` (what this build creates), in words; `None` when
    /// they are the same.
    pub fn differences(&self, found: &MapSpec) -> Option<String> {
        let fields = [
            ("type", self.map_type, found.map_type),
            ("key size", self.key_size, found.key_size),
            ("value size", self.value_size, found.value_size),
            ("max entries", self.max_entries, found.max_entries),
            ("flags", self.flags, found.flags),
        ];
        let differing: Vec<String> = fields
            .iter()
            .filter(|(_, expected, found)| expected != found)
            .map(|(what, expected, found)| format!("{what} {found} (this build: {expected})"))
            .collect();
        (!differing.is_empty()).then(|| differing.join(", "))
    }
}

/// The definitions of the maps in `object`, by map name, with `max_entries` replaced as the
/// loader replaces it.
pub fn object_specs(
    object: &[u8],
    max_entries: &[(&str, u32)],
) -> Result<HashMap<String, MapSpec>, aya_obj::ParseError> {
    let parsed = aya_obj::Object::parse(object)?;
    Ok(parsed
        .maps
        .iter()
        .map(|(name, map)| {
            let max = max_entries
                .iter()
                .find(|(n, _)| n == name)
                .map_or(map.max_entries(), |&(_, m)| m);
            let spec = MapSpec {
                map_type: map.map_type(),
                key_size: map.key_size(),
                value_size: map.value_size(),
                max_entries: max,
                flags: map.map_flags(),
            };
            (name.clone(), spec)
        })
        .collect())
}

/// What was found in a pin directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Each persistent map pinned there, by map name: its kernel description, or why it did
    /// not open.
    pub maps: Vec<(&'static str, Result<MapSpec, String>)>,
    /// The `PIN_STATE` record, when it is pinned and readable.
    pub state: Option<PinState>,
}

/// What to do with the pins found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is pinned: create and pin.
    Fresh,
    /// The maps are this build's: reuse them. `same_programs`: the pinned links run this
    /// build's programs (keep them attached).
    Reuse {
        /// Whether the programs' stamp matches.
        same_programs: bool,
    },
    /// The pins cannot be reused: remove them and start afresh. The reason names the map and
    /// what differs.
    Recreate(String),
}

/// Decides from what was found, what this build creates (`expected`) and its program stamp.
pub fn decide<S: std::hash::BuildHasher>(
    found: &Found,
    expected: &HashMap<String, MapSpec, S>,
    stamp: u64,
) -> Decision {
    if found.maps.is_empty() {
        return Decision::Fresh;
    }
    for (name, spec) in &found.maps {
        let reason = match (spec, expected.get(*name)) {
            (Err(e), _) => Some(format!("map {name}: {e}")),
            (Ok(_), None) => Some(format!("map {name} is not in this build's object")),
            (Ok(found), Some(expected)) => expected
                .differences(found)
                .map(|d| format!("map {name}: {d}")),
        };
        if let Some(reason) = reason {
            return Decision::Recreate(reason);
        }
    }
    match found.state {
        None => Decision::Recreate(format!(
            "no readable {PIN_STATE_MAP} record beside the maps (pins of an older build)"
        )),
        Some(state) if state.layout_version != MAP_LAYOUT_VERSION => Decision::Recreate(format!(
            "map layout version {} (this build: {MAP_LAYOUT_VERSION})",
            state.layout_version
        )),
        Some(state) => Decision::Reuse {
            same_programs: state.program_stamp == stamp,
        },
    }
}

/// Reads what is pinned in `dir`: each persistent map's description and the state record.
pub fn inspect(dir: &Path) -> Found {
    let mut found = Found::default();
    for (map, pin) in PERSISTENT_MAPS {
        let path = dir.join(pin);
        if !path.exists() {
            continue;
        }
        let spec = MapInfo::from_pin(&path)
            .map(|info| MapSpec::of(&info))
            .map_err(|e| format!("{}: {}", path.display(), crate::error_chain::ErrorChain(&e)));
        found.maps.push((map, spec));
    }
    found.state = read_state(&dir.join(PIN_STATE_PIN_NAME));
    found
}

/// The record in a pinned `PIN_STATE` map, when it opens and reads.
fn read_state(path: &Path) -> Option<PinState> {
    let data = aya::maps::MapData::from_pin(path).ok()?;
    let array: aya::maps::Array<_, PinState> =
        aya::maps::Array::try_from(aya::maps::Map::Array(data)).ok()?;
    array.get(&0, 0).ok()
}

/// The stamp of the programs this daemon attaches: FNV-1a (stable across builds of the
/// daemon, unlike std's hasher) over the object's bytes, the bytes written into its globals
/// (`globals`: the kernel offsets) and what the programs attach to (`targets`).
pub fn program_stamp(object: &[u8], globals: &[u8], targets: &[&[u8]]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = OFFSET_BASIS;
    let mut feed = |bytes: &[u8]| {
        // The length first: ("ab", "c") and ("a", "bc") must differ.
        for &b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    feed(object);
    feed(globals);
    for target in targets {
        feed(target);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `BPF_MAP_TYPE_HASH`.
    const HASH: u32 = 1;

    fn processes_spec(max_entries: u32) -> MapSpec {
        MapSpec {
            map_type: HASH,
            key_size: 4,
            value_size: 32,
            max_entries,
            flags: 0,
        }
    }

    fn expected() -> HashMap<String, MapSpec> {
        HashMap::from([
            (PROCESSES_MAP.to_owned(), processes_spec(65_536)),
            (
                PIN_STATE_MAP.to_owned(),
                MapSpec {
                    map_type: 2,
                    key_size: 4,
                    value_size: 16,
                    max_entries: 1,
                    flags: 0,
                },
            ),
        ])
    }

    fn state(layout_version: u32, program_stamp: u64) -> PinState {
        PinState {
            layout_version,
            reserved: 0,
            program_stamp,
        }
    }

    fn found(processes: MapSpec, state: Option<PinState>) -> Found {
        Found {
            maps: vec![
                (PROCESSES_MAP, Ok(processes)),
                (PIN_STATE_MAP, Ok(expected()[PIN_STATE_MAP])),
            ],
            state,
        }
    }

    #[test]
    fn nothing_pinned_is_a_fresh_start() {
        assert_eq!(decide(&Found::default(), &expected(), 7), Decision::Fresh);
    }

    #[test]
    fn same_maps_are_reused_and_the_stamp_says_whether_the_links_are() {
        let same = found(processes_spec(65_536), Some(state(MAP_LAYOUT_VERSION, 7)));
        assert_eq!(
            decide(&same, &expected(), 7),
            Decision::Reuse {
                same_programs: true
            }
        );
        assert_eq!(
            decide(&same, &expected(), 8),
            Decision::Reuse {
                same_programs: false
            }
        );
    }

    #[test]
    fn a_differing_map_is_recreated_naming_the_map_and_the_difference() {
        let resized = found(processes_spec(1024), Some(state(MAP_LAYOUT_VERSION, 7)));
        assert_eq!(
            decide(&resized, &expected(), 7),
            Decision::Recreate("map PROCESSES: max entries 1024 (this build: 65536)".to_owned())
        );
        let other_value = MapSpec {
            value_size: 40,
            flags: 1,
            ..processes_spec(65_536)
        };
        assert_eq!(
            decide(
                &found(other_value, Some(state(MAP_LAYOUT_VERSION, 7))),
                &expected(),
                7
            ),
            Decision::Recreate(
                "map PROCESSES: value size 40 (this build: 32), flags 1 (this build: 0)".to_owned()
            )
        );
    }

    #[test]
    fn another_layout_version_or_no_record_is_recreated() {
        let old = found(
            processes_spec(65_536),
            Some(state(MAP_LAYOUT_VERSION + 1, 7)),
        );
        assert_eq!(
            decide(&old, &expected(), 7),
            Decision::Recreate(format!(
                "map layout version {} (this build: {MAP_LAYOUT_VERSION})",
                MAP_LAYOUT_VERSION + 1
            ))
        );
        let Decision::Recreate(reason) =
            decide(&found(processes_spec(65_536), None), &expected(), 7)
        else {
            panic!("pins without a record are not reused")
        };
        assert!(reason.contains("no readable PIN_STATE record"), "{reason}");
    }

    #[test]
    fn an_unknown_or_unreadable_pin_is_recreated() {
        let unknown = Found {
            maps: vec![(COUNTERS_MAP, Ok(processes_spec(1)))],
            state: Some(state(MAP_LAYOUT_VERSION, 7)),
        };
        assert_eq!(
            decide(&unknown, &expected(), 7),
            Decision::Recreate("map COUNTERS is not in this build's object".to_owned())
        );
        let unreadable = Found {
            maps: vec![(PROCESSES_MAP, Err("EPERM".to_owned()))],
            state: None,
        };
        assert_eq!(
            decide(&unreadable, &expected(), 7),
            Decision::Recreate("map PROCESSES: EPERM".to_owned())
        );
    }

    #[test]
    fn the_objects_specs_carry_the_overrides() {
        let object = super::super::loader::object();
        let specs = object_specs(object, &[(PROCESSES_MAP, 4096)]).expect("the object parses");
        for (map, _) in PERSISTENT_MAPS {
            assert!(specs.contains_key(map), "{map} is in the object: {specs:?}");
        }
        assert_eq!(specs[PROCESSES_MAP].max_entries, 4096);
        assert_eq!(specs[PROCESSES_MAP].key_size, 4);
        assert_eq!(
            specs[PROCESSES_MAP].value_size as usize,
            size_of::<collector_common::process::ProcessInfo>()
        );
        assert_eq!(
            specs[PIN_STATE_MAP].value_size as usize,
            size_of::<PinState>()
        );
    }

    #[test]
    fn the_stamp_follows_every_input() {
        let base = program_stamp(b"object", b"offsets", &[b"/sys/fs/cgroup"]);
        assert_eq!(
            base,
            program_stamp(b"object", b"offsets", &[b"/sys/fs/cgroup"])
        );
        assert_ne!(
            base,
            program_stamp(b"object2", b"offsets", &[b"/sys/fs/cgroup"])
        );
        assert_ne!(
            base,
            program_stamp(b"object", b"offsets2", &[b"/sys/fs/cgroup"])
        );
        assert_ne!(base, program_stamp(b"object", b"offsets", &[b"/other"]));
        assert_ne!(
            program_stamp(b"ab", b"c", &[]),
            program_stamp(b"a", b"bc", &[])
        );
    }
}
