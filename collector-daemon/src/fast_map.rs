//! The hash map of the collection's hot path. A full collection of 1,000 containers looks
//! up container ids, cache keys and cgroup paths (64–120 bytes each) tens of thousands of
//! times; std's `SipHash` spends ~50 ns on each. foldhash is several times faster on such
//! keys and, seeded per process like std's, keeps keys a client chooses (container ids in
//! requests, which the provider cache stores) from being made to collide.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
