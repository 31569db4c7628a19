//! The hottest keys: a sampled, bounded top-K of keys by requests and by
//! bytes sent, over a sliding window. memcached has nothing like it; an
//! operator whose node saturates asks "which key?", and `stats hotkeys` or
//! `ferrocache_hot_key_share` answers.
//!
//! The algorithm is Space-Saving (Metwally, Agrawal, El Abbadi, 2005): a
//! fixed number of counters; a key without one takes the smallest counter
//! over, inheriting its count as the key's possible overcount (its error).
//! Every estimate is at least the key's true count and at most its true
//! count plus its error, and any key counted more than N/m times (N
//! samples, m counters) holds a counter. Memory is fixed: m counters, each
//! with a copy of at most one key, whatever the number of distinct keys.
//!
//! Requests are sampled, one in `sample` per connection, so the request path
//! pays a countdown, and a short lock only for sampled requests. Counters
//! are split into shards by key hash, so concurrent connections seldom meet
//! on a lock; a key lives in one shard only. The window slides in two
//! halves: counts go to the current half, and the report adds the previous
//! one, so it covers between one and one and a half windows.
//!
//! This module knows nothing of the protocol or the server: the executor
//! calls [`HotKeys::record`] with the key and the bytes a reply carried.

use std::hash::BuildHasher;
use std::sync::Mutex;

use hashbrown::HashTable;

/// Counters per shard for each top-K: Space-Saving's error bound is N/m, so
/// m = 16 K keeps the bound small against the counts that make the top.
const COUNTERS_PER_K: usize = 16;
/// Shards: a power of two, enough that two threads seldom share a lock.
const SHARDS: usize = 8;

/// `-o hot_keys=...` and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotKeysConfig {
    pub enabled: bool,
    /// Keys reported (`hot_keys_top`).
    pub top: usize,
    /// Seconds the report covers at least (`hot_keys_window`).
    pub window: u32,
    /// One request in this many is counted (`hot_keys_sample`).
    pub sample: u32,
}

impl Default for HotKeysConfig {
    fn default() -> Self {
        HotKeysConfig {
            enabled: true,
            top: 10,
            window: 60,
            sample: 16,
        }
    }
}

/// One key in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotKey {
    pub key: Vec<u8>,
    /// Estimated requests in the window, scaled up by the sampling rate.
    pub count: u64,
    /// How much `count` may exceed the sampled truth (Space-Saving's bound),
    /// scaled the same way.
    pub error: u64,
    /// Estimated bytes of values sent for the key, scaled the same way.
    pub bytes: u64,
}

/// One counter of a summary.
#[derive(Debug)]
struct Counter {
    key: Box<[u8]>,
    /// The key's hash, kept so the table never hashes a key twice.
    hash: u64,
    count: u64,
    /// How much of `count` the key may have inherited from the key it
    /// replaced.
    error: u64,
    /// Where the counter stands in the heap.
    at: usize,
}

/// A Space-Saving summary: at most `capacity` counters, found by key
/// through a hash table and kept in a min-heap by count, so that both
/// counting a key and replacing the smallest counter take O(log m).
#[derive(Debug)]
struct Summary {
    capacity: usize,
    counters: Vec<Counter>,
    /// Counter indexes, by the hash of their key.
    index: HashTable<usize>,
    /// Counter indexes, the smallest count first.
    heap: Vec<usize>,
}

impl Summary {
    fn new(capacity: usize) -> Self {
        Summary {
            capacity,
            counters: Vec::with_capacity(capacity),
            index: HashTable::with_capacity(capacity),
            heap: Vec::with_capacity(capacity),
        }
    }

    fn find(&self, key: &[u8], hash: u64) -> Option<usize> {
        self.index
            .find(hash, |&i| &*self.counters[i].key == key)
            .copied()
    }

    /// Adds `weight` to `key`'s counter, taking the smallest over if the
    /// key has none and all are in use.
    fn add(&mut self, key: &[u8], hash: u64, weight: u64) {
        if let Some(i) = self.find(key, hash) {
            self.counters[i].count += weight;
            self.sift_down(self.counters[i].at);
            return;
        }
        let i = if self.counters.len() < self.capacity {
            let i = self.counters.len();
            self.counters.push(Counter {
                key: key.into(),
                hash,
                count: weight,
                error: 0,
                at: self.heap.len(),
            });
            self.heap.push(i);
            self.sift_up(self.heap.len() - 1);
            i
        } else {
            let i = self.heap[0];
            let old = &self.counters[i];
            if let Ok(entry) = self.index.find_entry(old.hash, |&j| j == i) {
                entry.remove();
            }
            let min = old.count;
            let c = &mut self.counters[i];
            c.hash = hash;
            // Keys of one length (the common case) reuse the allocation.
            if c.key.len() == key.len() {
                c.key.copy_from_slice(key);
            } else {
                c.key = key.into();
            }
            c.count = min + weight;
            c.error = min;
            self.sift_down(0);
            i
        };
        let counters = &self.counters;
        self.index.insert_unique(hash, i, |&j| counters[j].hash);
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.count_at(parent) <= self.count_at(at) {
                break;
            }
            self.swap(at, parent);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        loop {
            let (l, r) = (2 * at + 1, 2 * at + 2);
            let mut least = at;
            if l < self.heap.len() && self.count_at(l) < self.count_at(least) {
                least = l;
            }
            if r < self.heap.len() && self.count_at(r) < self.count_at(least) {
                least = r;
            }
            if least == at {
                return;
            }
            self.swap(at, least);
            at = least;
        }
    }

    fn count_at(&self, at: usize) -> u64 {
        self.counters[self.heap[at]].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.counters[self.heap[a]].at = a;
        self.counters[self.heap[b]].at = b;
    }

    fn clear(&mut self) {
        self.counters.clear();
        self.index.clear();
        self.heap.clear();
    }

    /// The most a key without a counter may have been counted: 0, or the
    /// smallest counter once all are in use.
    fn floor(&self) -> u64 {
        if self.counters.len() < self.capacity {
            0
        } else {
            self.heap.first().map_or(0, |&i| self.counters[i].count)
        }
    }

    fn get(&self, key: &[u8], hash: u64) -> Option<(u64, u64)> {
        self.find(key, hash)
            .map(|i| (self.counters[i].count, self.counters[i].error))
    }
}

/// One shard: requests and bytes, each in two window halves.
#[derive(Debug)]
struct Shard {
    /// The window half the counts at index `epoch & 1` belong to.
    epoch: u32,
    /// Sampled requests, for the share of the hottest key.
    sampled: [u64; 2],
    requests: [Summary; 2],
    bytes: [Summary; 2],
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Shard {
            epoch: 0,
            sampled: [0; 2],
            requests: [Summary::new(capacity), Summary::new(capacity)],
            bytes: [Summary::new(capacity), Summary::new(capacity)],
        }
    }

    /// Moves the window on to `epoch`: the current half becomes the
    /// previous one, or both are dropped if more than a half went by.
    fn roll(&mut self, epoch: u32) {
        if epoch == self.epoch {
            return;
        }
        let steps = epoch.wrapping_sub(self.epoch);
        let cur = (self.epoch & 1) as usize;
        for s in [&mut self.requests, &mut self.bytes] {
            if steps == 1 {
                s[1 - cur].clear();
            } else {
                s[0].clear();
                s[1].clear();
            }
        }
        if steps == 1 {
            self.sampled[1 - cur] = 0;
        } else {
            self.sampled = [0; 2];
        }
        self.epoch = epoch;
    }
}

/// The hot-key tracker of one server.
pub struct HotKeys {
    config: HotKeysConfig,
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::FixedState,
}

impl std::fmt::Debug for HotKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotKeys")
            .field("config", &self.config)
            .finish()
    }
}

impl HotKeys {
    pub fn new(config: HotKeysConfig) -> Self {
        let capacity = (config.top * COUNTERS_PER_K).max(1);
        HotKeys {
            config,
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard::new(capacity)))
                .collect(),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed),
        }
    }

    pub fn config(&self) -> &HotKeysConfig {
        &self.config
    }

    /// The window half `now` (seconds on the store's clock) falls in.
    fn epoch(&self, now: u32) -> u32 {
        now / (self.config.window / 2).max(1)
    }

    /// Counts one sampled request for `key` that sent `bytes` of value.
    pub fn record(&self, key: &[u8], bytes: usize, now: u32) {
        let epoch = self.epoch(now);
        let half = (epoch & 1) as usize;
        let hash = self.hasher.hash_one(key);
        // The top bits pick the shard; the table uses the low ones.
        let shard = (hash >> 60) as usize & (SHARDS - 1);
        let mut s = self.shards[shard].lock().expect("hot keys lock poisoned");
        s.roll(epoch);
        s.sampled[half] += 1;
        s.requests[half].add(key, hash, 1);
        if bytes > 0 {
            s.bytes[half].add(key, hash, bytes as u64);
        }
    }

    /// The `top` hottest keys by requests over the window ending at `now`,
    /// hottest first.
    pub fn top(&self, now: u32) -> Vec<HotKey> {
        let epoch = self.epoch(now);
        let scale = u64::from(self.config.sample.max(1));
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let mut s = shard.lock().expect("hot keys lock poisoned");
            s.roll(epoch);
            let [a, b] = &s.requests;
            // Every key either half counted, with both halves' counts; a
            // half that has no counter for it may still have counted it up
            // to its floor, which goes into the error.
            let mut keys: Vec<&[u8]> = a.counters.iter().map(|c| &*c.key).collect();
            keys.extend(
                b.counters
                    .iter()
                    .map(|c| &*c.key)
                    .filter(|k| a.get(k, self.hasher.hash_one(k)).is_none()),
            );
            for key in keys {
                let hash = self.hasher.hash_one(key);
                let (mut count, mut error) = (0, 0);
                for half in [a, b] {
                    match half.get(key, hash) {
                        Some((c, e)) => {
                            count += c;
                            error += e;
                        }
                        None => {
                            let floor = half.floor();
                            count += floor;
                            error += floor;
                        }
                    }
                }
                let bytes: u64 = s
                    .bytes
                    .iter()
                    .map(|h| h.get(key, hash).map_or(0, |(c, _)| c))
                    .sum();
                all.push(HotKey {
                    key: key.to_vec(),
                    count: count * scale,
                    error: error * scale,
                    bytes: bytes * scale,
                });
            }
        }
        // Rank by what was surely counted, then by the estimate.
        all.sort_by(|x, y| {
            (y.count - y.error, y.count, &x.key).cmp(&(x.count - x.error, x.count, &y.key))
        });
        all.truncate(self.config.top);
        all
    }

    /// The share of the window's requests that the hottest key took, by
    /// its surely-counted requests; 0 with no samples.
    pub fn top_share(&self, now: u32) -> f64 {
        let epoch = self.epoch(now);
        let total: u64 = self
            .shards
            .iter()
            .map(|shard| {
                let mut s = shard.lock().expect("hot keys lock poisoned");
                s.roll(epoch);
                s.sampled[0] + s.sampled[1]
            })
            .sum();
        if total == 0 {
            return 0.0;
        }
        let scale = u64::from(self.config.sample.max(1));
        let sure = self
            .top(now)
            .first()
            .map_or(0, |k| (k.count - k.error) / scale);
        (sure as f64 / total as f64).min(1.0)
    }
}

/// A key as reports show it: printable ASCII as is, every other byte (and
/// `%`, space, `"` and `\\`) as `%XX`, so that a key stays one token on a
/// `stats` line and a valid Prometheus label value whatever it holds.
pub fn shown_key(key: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(key.len());
    for &b in key {
        if b.is_ascii_graphic() && !matches!(b, b'%' | b'"' | b'\\') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Per-connection sampling: a countdown, restarted at a pseudo-random
/// length averaging `sample`, so periodic traffic is not aliased.
#[derive(Debug, Clone)]
pub struct Sampler {
    left: u32,
    state: u32,
}

impl Sampler {
    pub fn new(seed: u32) -> Self {
        Sampler {
            left: 1,
            state: seed | 1,
        }
    }

    /// True for about one call in `sample`.
    #[inline]
    pub fn take(&mut self, sample: u32) -> bool {
        self.left -= 1;
        if self.left > 0 {
            return false;
        }
        // xorshift32: the next gap, uniform in 1..=2*sample-1.
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        let span = (2 * sample.max(1)).saturating_sub(1).max(1);
        self.left = 1 + x % span;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::test_rng::Rng;

    fn every_request(top: usize) -> HotKeys {
        HotKeys::new(HotKeysConfig {
            enabled: true,
            top,
            window: 60,
            sample: 1,
        })
    }

    /// Zipf(s) over `n` ranks by inversion of the cumulative weights.
    fn zipf(n: usize, s: f64) -> Vec<f64> {
        let mut cum = Vec::with_capacity(n);
        let mut total = 0.0;
        for rank in 1..=n {
            total += 1.0 / (rank as f64).powf(s);
            cum.push(total);
        }
        cum.iter().map(|c| c / total).collect()
    }

    #[test]
    fn zipf_top_ten_is_found_within_the_error_bound() {
        let hot = every_request(10);
        let cum = zipf(100_000, 0.99);
        let mut rng = Rng::new(99);
        let mut truth: HashMap<u32, u64> = HashMap::new();
        for _ in 0..1_000_000 {
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let rank = cum.partition_point(|&c| c < u) as u32;
            // Ranks are shuffled into key names so that order means nothing.
            let key = format!("user:{}", rank.wrapping_mul(2_654_435_761));
            hot.record(key.as_bytes(), 100, 0);
            *truth.entry(rank).or_default() += 1;
        }
        let mut true_top: Vec<(u32, u64)> = truth.iter().map(|(&r, &c)| (r, c)).collect();
        true_top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let true_keys: Vec<String> = true_top[..10]
            .iter()
            .map(|(r, _)| format!("user:{}", r.wrapping_mul(2_654_435_761)))
            .collect();
        let found = hot.top(0);
        assert_eq!(found.len(), 10);
        let recall = found
            .iter()
            .filter(|k| true_keys.iter().any(|t| t.as_bytes() == &k.key[..]))
            .count();
        assert!(recall >= 9, "recall {recall}/10");
        for k in &found {
            let name = String::from_utf8(k.key.clone()).unwrap();
            let rank = true_top
                .iter()
                .find(|(r, _)| format!("user:{}", r.wrapping_mul(2_654_435_761)) == name)
                .map(|(_, c)| *c)
                .unwrap_or(0);
            assert!(
                k.count >= rank && k.count <= rank + k.error,
                "{name}: estimate {} error {} truth {rank}",
                k.count,
                k.error
            );
            assert!(k.bytes >= 100 * rank, "{name}: bytes {}", k.bytes);
        }
    }

    /// Every summary stays within its counters, and every table within
    /// the room it was given, whatever the number of distinct keys.
    fn assert_bounded(summary: &Summary, capacity: usize) {
        assert!(summary.counters.len() <= capacity);
        assert!(summary.counters.capacity() <= capacity);
        assert!(summary.index.len() <= capacity);
        assert!(summary.index.capacity() <= 2 * capacity.next_power_of_two());
        assert!(summary.heap.capacity() <= capacity);
    }

    #[test]
    fn memory_stays_fixed_under_ten_million_distinct_keys() {
        // One summary takes them all (the shards and window halves only
        // divide the keys among more summaries of the same size).
        let capacity = 10 * COUNTERS_PER_K;
        let hasher = foldhash::fast::FixedState::with_seed(1);
        let mut summary = Summary::new(capacity);
        let mut key = [0u8; 16];
        for i in 0..10_000_000u64 {
            key[..8].copy_from_slice(&i.to_le_bytes());
            summary.add(&key, hasher.hash_one(key), 1);
        }
        assert_bounded(&summary, capacity);
        assert_eq!(summary.counters.len(), capacity);
        // And through the whole tracker, a million more.
        let hot = every_request(10);
        for i in 0..1_000_000u64 {
            key[..8].copy_from_slice(&i.to_le_bytes());
            hot.record(&key, 1, 0);
        }
        for shard in hot.shards.iter() {
            let s = shard.lock().unwrap();
            for summary in s.requests.iter().chain(s.bytes.iter()) {
                assert_bounded(summary, capacity);
            }
        }
    }

    #[test]
    fn the_window_forgets_keys_after_two_halves() {
        let hot = every_request(3);
        hot.record(b"old", 10, 0);
        assert_eq!(hot.top(0)[0].key, b"old");
        // Half a window later the old half still counts...
        hot.record(b"new", 10, 30);
        let keys: Vec<Vec<u8>> = hot.top(30).into_iter().map(|k| k.key).collect();
        assert!(keys.contains(&b"old".to_vec()) && keys.contains(&b"new".to_vec()));
        // ...and a whole window later it is gone.
        assert!(hot.top(60).iter().all(|k| k.key != b"old"));
        assert!(hot.top(200).is_empty());
    }

    #[test]
    fn long_and_binary_keys_are_kept_whole() {
        let hot = every_request(2);
        let long = [b'k'; 250];
        let binary = [0u8, b'\n', b' ', 0xff];
        for _ in 0..3 {
            hot.record(&long, 1, 5);
        }
        hot.record(&binary, 7, 5);
        let top = hot.top(5);
        assert_eq!(top[0].key, long.to_vec());
        assert_eq!(top[0].count, 3);
        assert_eq!(top[1].key, binary.to_vec());
        assert_eq!(top[1].bytes, 7);
    }

    #[test]
    fn share_is_the_hottest_keys_part_of_the_samples() {
        let hot = every_request(5);
        assert_eq!(hot.top_share(0), 0.0);
        for i in 0..100 {
            let key = if i % 4 == 0 {
                "hot".to_string()
            } else {
                format!("k{i}")
            };
            hot.record(key.as_bytes(), 0, 0);
        }
        assert!(
            (hot.top_share(0) - 0.25).abs() < 1e-9,
            "{}",
            hot.top_share(0)
        );
    }

    #[test]
    fn shown_keys_are_one_printable_token() {
        assert_eq!(shown_key(b"user:42"), "user:42");
        assert_eq!(shown_key(b"a b%\"\\\n\xff"), "a%20b%25%22%5C%0A%FF");
    }

    #[test]
    fn sampler_takes_about_one_in_n() {
        let mut s = Sampler::new(7);
        let taken = (0..80_000).filter(|_| s.take(8)).count();
        assert!((9_000..=11_000).contains(&taken), "{taken}");
        let mut every = Sampler::new(1);
        assert!((0..100).all(|_| every.take(1)));
    }
}
