//! What a write adds to a tenant's memory, estimated from its arguments
//! alone, between two measuring passes. It is what keeps a tenant within
//! its quota while its keys churn faster than a pass runs, so it models what
//! Redis (with its default allocator, jemalloc) spends on a string key, as
//! `MEMORY USAGE` reports it: the value's allocation (its sds header and
//! terminator, rounded up to jemalloc's size class; values of up to 44 bytes
//! share one allocation with their object header), the 16-byte object
//! header, the key's sds allocation and the 24-byte dict entry. A 1,000-byte
//! value costs 1,080 bytes, not 1,077, and a 1,030-byte one 1,336: without
//! the rounding, a flood of such values would run a quarter over its quota.
//! Other types are estimated by the same rules per argument; the next
//! measuring pass corrects what they miss.

/// Redis's object header (`robj`).
const OBJECT: usize = 16;
/// A key's entry in the database's dict.
const DICT_ENTRY: usize = 24;
/// Values up to this long are stored with their header in one allocation.
const EMBSTR_MAX: usize = 44;

/// The usable size jemalloc gives a request of `n` bytes: classes of 8 and
/// 16, then four per doubling, at least 16 apart.
fn size_class(n: usize) -> usize {
    match n {
        0..=8 => 8,
        9..=16 => 16,
        _ => {
            // 2^k < n <= 2^(k+1)
            let k = usize::BITS - 1 - (n - 1).leading_zeros();
            let step = (1usize << (k - 2)).max(16);
            n.div_ceil(step) * step
        }
    }
}

/// An sds string of `len` bytes: its header, the bytes and a terminator.
fn sds(len: usize, short_header: bool) -> usize {
    let header = match len {
        // Keys shorter than 32 bytes get sds's 1-byte header.
        0..=31 if short_header => 1,
        0..=255 => 3,
        256..=65_535 => 5,
        _ => 9,
    };
    size_class(header + len + 1)
}

fn key_cost(len: usize) -> usize {
    sds(len, true) + DICT_ENTRY
}

fn value_cost(len: usize) -> usize {
    if len <= EMBSTR_MAX {
        size_class(OBJECT + 3 + len + 1)
    } else {
        sds(len, false) + OBJECT
    }
}

/// Estimated memory a write adds: each key it names and each other argument
/// (after the command name) as a value. Overwrites are counted as growth;
/// the next measurement corrects that.
pub fn write_cost(args: &[bytes::Bytes], keys: &[usize]) -> i64 {
    let values: usize = args.iter().skip(1).map(|a| value_cost(a.len())).sum();
    // Then each key as a key rather than a value: linear in a big MSET.
    let cost = keys
        .iter()
        .filter_map(|&i| args.get(i).filter(|_| i > 0))
        .fold(values, |cost, k| cost.saturating_sub(value_cost(k.len())) + key_cost(k.len()));
    // A write naming no key (a script's) still costs something.
    let floor = if keys.is_empty() { key_cost(0) } else { 0 };
    (cost + floor) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn size_classes_are_jemallocs() {
        let classes: Vec<usize> = [1, 8, 9, 16, 17, 33, 65, 104, 129, 204, 506, 1006, 1025, 2006, 5006, 14_337]
            .iter()
            .map(|&n| size_class(n))
            .collect();
        assert_eq!(classes, [8, 8, 16, 16, 32, 48, 80, 112, 160, 224, 512, 1024, 1280, 2048, 5120, 16_384]);
    }

    /// `MEMORY USAGE` of `SET a:flood:k<n> <n bytes>` on Redis 7.0 (jemalloc 5.3).
    #[test]
    fn a_string_key_costs_what_memory_usage_reports() {
        for (key, value, usage) in [
            ("a:flood:k10", 10, 72),
            ("a:flood:k100", 100, 168),
            ("a:flood:k200", 200, 280),
            ("a:flood:k500", 500, 568),
            ("a:flood:12345", 1000, 1080),
            ("a:flood:k2000", 2000, 2104),
            ("a:flood:k5000", 5000, 5176),
        ] {
            let args = [Bytes::from_static(b"SET"), Bytes::from(key), Bytes::from(vec![b'x'; value])];
            assert_eq!(write_cost(&args, &[1]), usage, "{key} of {value} bytes");
        }
    }

    #[test]
    fn every_argument_counts_and_a_keyless_write_costs_something() {
        let mset: Vec<Bytes> = ["MSET", "k1", "v", "k2", "v"].iter().map(|s| Bytes::from(*s)).collect();
        let one = write_cost(&mset[..3], &[1]);
        assert_eq!(write_cost(&mset, &[1, 3]), 2 * one);
        assert!(write_cost(&[Bytes::from_static(b"EVAL")], &[]) > 0);
    }
}
