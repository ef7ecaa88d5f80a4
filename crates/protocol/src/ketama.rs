//! twemproxy's ketama distribution, point for point, so a pool moved from
//! twemproxy to tenantry finds every key on the node twemproxy put it on.

use md5::{Digest, Md5};

/// twemproxy's key hashes. Its FNV variants read key bytes as C `char`
/// (signed on the platforms it runs on) and return 32 bits: kept as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHash {
    Md5,
    Fnv1_64,
    Fnv1a64,
    Fnv1_32,
    Fnv1a32,
}

const FNV_64_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_64_PRIME: u64 = 0x0100_0000_01b3;
const FNV_32_INIT: u32 = 2_166_136_261;
const FNV_32_PRIME: u32 = 16_777_619;

/// A byte as twemproxy's `(uint32_t)key[x]` sees it.
fn signed(b: u8) -> u32 {
    b as i8 as i32 as u32
}

impl KeyHash {
    pub fn hash(self, key: &[u8]) -> u32 {
        match self {
            KeyHash::Md5 => md5_word(key, 0),
            KeyHash::Fnv1_64 => {
                let mut h = FNV_64_INIT;
                for &b in key {
                    h = h.wrapping_mul(FNV_64_PRIME);
                    h ^= b as i8 as i64 as u64;
                }
                h as u32
            }
            KeyHash::Fnv1a64 => {
                let mut h = FNV_64_INIT as u32;
                for &b in key {
                    h ^= signed(b);
                    h = h.wrapping_mul(FNV_64_PRIME as u32);
                }
                h
            }
            KeyHash::Fnv1_32 => {
                let mut h = FNV_32_INIT;
                for &b in key {
                    h = h.wrapping_mul(FNV_32_PRIME);
                    h ^= signed(b);
                }
                h
            }
            KeyHash::Fnv1a32 => {
                let mut h = FNV_32_INIT;
                for &b in key {
                    h ^= signed(b);
                    h = h.wrapping_mul(FNV_32_PRIME);
                }
                h
            }
        }
    }
}

/// The `word`-th little-endian 32-bit word of the MD5 digest.
fn md5_word(data: &[u8], word: usize) -> u32 {
    let digest = Md5::digest(data);
    u32::from_le_bytes(digest[word * 4..word * 4 + 4].try_into().expect("four bytes"))
}

const POINTS_PER_SERVER: f32 = 160.0;
const POINTS_PER_HASH: u32 = 4;

/// The continuum: sorted points, each owned by a node (its index).
#[derive(Debug, Clone)]
pub struct Continuum {
    points: Vec<(u32, usize)>,
    hash: KeyHash,
    tag: Option<[u8; 2]>,
}

impl Continuum {
    /// `nodes`: each node's ketama name (`host:port` or its given name) and weight.
    pub fn new(nodes: &[(String, u32)], hash: KeyHash, tag: Option<[u8; 2]>) -> Self {
        let total: u32 = nodes.iter().map(|(_, w)| *w).sum();
        let live = nodes.len() as f32;
        let mut points = Vec::new();
        for (index, (name, weight)) in nodes.iter().enumerate() {
            let pct = *weight as f32 / total as f32;
            // twemproxy's float arithmetic, kept in f32 so the counts match.
            let per_server = ((pct * POINTS_PER_SERVER / 4.0 * live + 0.000_000_000_1).floor() * 4.0) as u32;
            for i in 0..per_server / POINTS_PER_HASH {
                let host = format!("{name}-{i}");
                let digest = Md5::digest(host.as_bytes());
                for x in 0..POINTS_PER_HASH as usize {
                    let value = u32::from_le_bytes(digest[x * 4..x * 4 + 4].try_into().expect("four bytes"));
                    points.push((value, index));
                }
            }
        }
        points.sort_by_key(|p| p.0);
        Continuum { points, hash, tag }
    }

    /// The node index a (wire) key lives on.
    pub fn node_for(&self, key: &[u8]) -> usize {
        let nodes = self.points.iter().map(|p| p.1).max().map_or(0, |m| m + 1);
        if nodes <= 1 || self.points.is_empty() {
            return 0;
        }
        let key = self.tagged(key);
        let hash = if key.is_empty() { 0 } else { self.hash.hash(key) };
        let at = self.points.partition_point(|p| p.0 < hash);
        self.points.get(at).unwrap_or(&self.points[0]).1
    }

    /// The part between the hash tag's two bytes, when it is there and not empty.
    fn tagged<'a>(&self, key: &'a [u8]) -> &'a [u8] {
        let Some([open, close]) = self.tag else { return key };
        let Some(start) = key.iter().position(|&b| b == open) else { return key };
        match key[start + 1..].iter().position(|&b| b == close) {
            Some(len) if len > 0 => &key[start + 1..start + 1 + len],
            _ => key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_values() {
        // FNV-1a 32 of "a" from the FNV reference.
        assert_eq!(KeyHash::Fnv1a32.hash(b"a"), 0xe40c292c);
        assert_eq!(KeyHash::Fnv1_32.hash(b"a"), 0x050c5d7e);
        // twemproxy's fnv1a_64 is 32-bit arithmetic from the 64-bit basis's low word.
        let mut h: u32 = 0x8422_2325;
        h ^= b'a' as u32;
        h = h.wrapping_mul(0x1b3);
        assert_eq!(KeyHash::Fnv1a64.hash(b"a"), h);
    }

    #[test]
    fn weights_give_points_and_keys_spread() {
        let nodes: Vec<(String, u32)> = (0..3).map(|i| (format!("127.0.0.1:700{i}"), 1)).collect();
        let ring = Continuum::new(&nodes, KeyHash::Fnv1a64, None);
        assert_eq!(ring.points.len(), 480);
        let mut seen = [0usize; 3];
        for i in 0..3000 {
            seen[ring.node_for(format!("key:{i}").as_bytes())] += 1;
        }
        assert!(seen.iter().all(|&n| n > 500), "{seen:?}");
        let tagged = Continuum::new(&nodes, KeyHash::Fnv1a64, Some(*b"{}"));
        assert_eq!(tagged.node_for(b"a{user}b"), tagged.node_for(b"c{user}d"));
    }
}
