//! TTL hygiene as a rewrite: TTLs longer than a tenant's maximum are clamped,
//! every TTL set through tenantry is shortened by a random jitter so keys
//! written together do not expire together, and keys written without a TTL
//! get the tenant's default through a follow-up `PEXPIRE key ms NX`.
//!
//! Pure: the caller passes the time and a source of randomness.

use crate::command::{flags, keyspec_flags, profile, CommandSpec, TtlArgs, Writes};
use crate::num::parse_i64;
use bytes::Bytes;
use std::time::Duration;

/// One TTL rule (a tenant's, or a keyspace's within it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TtlRule {
    /// Given to keys written without a TTL.
    pub default: Option<Duration>,
    /// Longer TTLs are clamped to this.
    pub max: Option<Duration>,
    /// Every TTL set through tenantry is shortened by a random 0..jitter percent.
    pub jitter_percent: u8,
}

impl TtlRule {
    pub fn is_noop(&self) -> bool {
        self.default.is_none() && self.max.is_none() && self.jitter_percent == 0
    }

    /// Clamps and jitters a TTL in milliseconds; `unit` is a uniform sample in [0, 1).
    pub fn adjust_ms(&self, ttl_ms: u64, unit: f64) -> u64 {
        let clamped = match self.max {
            Some(max) => ttl_ms.min(max.as_millis() as u64),
            None => ttl_ms,
        };
        let cut = (clamped as f64 * f64::from(self.jitter_percent) / 100.0 * unit) as u64;
        (clamped - cut).max(1)
    }
}

/// What the TTL policy does to one command.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TtlRewrite {
    /// Arguments to replace: (index, new value).
    pub replace: Vec<(usize, Bytes)>,
    /// The command's new name (`SETEX` becomes `PSETEX`, `EXPIRE` `PEXPIRE`, ...).
    pub rename: Option<&'static str>,
    /// Client keys (argument indices) to give the default TTL to, if they have none.
    pub default_for: Vec<(usize, u64)>,
}

impl TtlRewrite {
    pub fn is_empty(&self) -> bool {
        self.replace.is_empty() && self.rename.is_none() && self.default_for.is_empty()
    }
}

/// Computes the rewrite for `args` (name at 0) given its key positions.
/// `rule` gives the rule for a client key; `now_ms` is Unix time in ms;
/// `unit()` returns uniform samples in [0, 1).
pub fn rewrite<'r>(
    spec: &CommandSpec,
    args: &[Bytes],
    keys: &[usize],
    rule: impl Fn(&[u8]) -> &'r TtlRule,
    now_ms: u64,
    mut unit: impl FnMut() -> f64,
) -> TtlRewrite {
    let mut rw = TtlRewrite::default();
    let Some(&first_key) = keys.first() else { return rw };
    let r = rule(&args[first_key]);
    let mut explicit = false;
    let p = profile(spec);
    match p.ttl {
        TtlArgs::Options { from } => {
            let mut i = from;
            while i < args.len() {
                let opt = &args[i];
                let (is_ms, absolute) = match () {
                    _ if opt.eq_ignore_ascii_case(b"EX") => (false, false),
                    _ if opt.eq_ignore_ascii_case(b"PX") => (true, false),
                    _ if opt.eq_ignore_ascii_case(b"EXAT") => (false, true),
                    _ if opt.eq_ignore_ascii_case(b"PXAT") => (true, true),
                    _ => {
                        i += 1;
                        continue;
                    }
                };
                explicit = true;
                if let Some(v) = args.get(i + 1).and_then(|v| parse_i64(v)).filter(|v| *v > 0) {
                    let ms = to_ms(v, is_ms, absolute, now_ms);
                    if ms > 0 {
                        let adjusted = r.adjust_ms(ms as u64, unit());
                        let (opt_name, value) = if absolute { ("PXAT", now_ms + adjusted) } else { ("PX", adjusted) };
                        rw.replace.push((i, Bytes::from_static(opt_name.as_bytes())));
                        rw.replace.push((i + 1, Bytes::from(value.to_string())));
                    }
                }
                i += 2;
            }
        }
        TtlArgs::Second { ms: is_ms, absolute, rename } => {
            explicit = true;
            if let Some(v) = parse_i64(&args[2]).filter(|v| *v > 0) {
                let ms = to_ms(v, is_ms, absolute, now_ms);
                // A TTL already in the past deletes the key: leave it alone.
                if ms > 0 {
                    let adjusted = r.adjust_ms(ms as u64, unit());
                    let value = if absolute { now_ms + adjusted } else { adjusted };
                    rw.replace.push((2, Bytes::from(value.to_string())));
                    rw.rename = Some(rename);
                }
            }
        }
        TtlArgs::Restore => {
            let absolute = args.iter().skip(4).any(|a| a.eq_ignore_ascii_case(b"ABSTTL"));
            if let Some(v) = parse_i64(&args[2]).filter(|v| *v > 0) {
                explicit = true;
                let ms = to_ms(v, true, absolute, now_ms);
                if ms > 0 {
                    let adjusted = r.adjust_ms(ms as u64, unit());
                    let value = if absolute { now_ms + adjusted } else { adjusted };
                    rw.replace.push((2, Bytes::from(value.to_string())));
                }
            }
        }
        TtlArgs::None => {}
    }
    // Commands that may create keys (`denyoom`) give written keys the default.
    if !explicit && spec.has_flag(flags::WRITE) && spec.has_flag(flags::DENYOOM) {
        let mut written = Vec::new();
        written_keys(spec, args, keys, &mut written);
        for i in written {
            let rule = rule(&args[i]);
            if let Some(d) = rule.default {
                rw.default_for.push((i, rule.adjust_ms(d.as_millis() as u64, unit())));
            }
        }
    }
    rw
}

fn to_ms(v: i64, is_ms: bool, absolute: bool, now_ms: u64) -> i64 {
    let ms = if is_ms { v } else { v.saturating_mul(1000) };
    if absolute {
        ms.saturating_sub(now_ms as i64)
    } else {
        ms
    }
}

/// Keys a command writes (its key specs say insert, update or overwrite,
/// not only read or delete).
fn written_keys(spec: &CommandSpec, args: &[Bytes], keys: &[usize], out: &mut Vec<usize>) {
    use keyspec_flags as KS;
    let mut per_spec = Vec::new();
    for ks in spec.key_specs {
        let writes = ks.flags & (KS::INSERT | KS::UPDATE | KS::OW) != 0 && ks.flags & KS::RO == 0;
        let one = CommandSpec { key_specs: std::slice::from_ref(ks), ..*spec };
        if writes && crate::command::key_positions(&one, args, &mut per_spec).is_ok() {
            out.extend(per_spec.iter().filter(|i| keys.contains(i)));
        }
    }
    if profile(spec).writes == Writes::StoreOption {
        // Only SORT's STORE destination is written.
        out.clear();
        if let Some(pos) = args.iter().position(|a| a.eq_ignore_ascii_case(b"STORE")) {
            out.push(pos + 1);
        }
    }
    out.sort_unstable();
    out.dedup();
}

#[cfg(test)]
#[path = "ttl_tests.rs"]
mod tests;
