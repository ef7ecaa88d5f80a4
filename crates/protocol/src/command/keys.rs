//! Key positions from key specs: Redis's `getKeysUsingKeySpecs`, without I/O.

use super::spec::{keyspec_flags, BeginSearch, CommandSpec, FindKeys};
use crate::num::parse_i64;

/// Argument indices (into the full argv, name at 0) that hold keys, sorted, deduplicated.
pub type KeyPositions = Vec<usize>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("ERR value is not an integer or out of range")]
    NumkeysNotInteger,
    #[error("ERR Number of keys can't be negative")]
    NumkeysNegative,
    #[error("ERR Number of keys can't be greater than number of args")]
    NumkeysTooLarge,
    #[error("ERR syntax error")]
    Syntax,
    /// SINTERCARD, ZINTERCARD, LMPOP, BLMPOP, ZMPOP, BZMPOP word it so.
    #[error("ERR numkeys should be greater than 0")]
    NumkeysNotPositive,
    /// ZUNION, ZINTER, ZDIFF and their STORE forms.
    #[error("ERR at least 1 input key is needed for '{0}' command")]
    NoInputKey(&'static str),
}

/// Redis words a bad key count per command; the generic words otherwise.
fn numkeys_error(command: &'static str, generic: KeyError) -> KeyError {
    match command {
        "sintercard" | "zintercard" | "lmpop" | "blmpop" | "zmpop" | "bzmpop" => KeyError::NumkeysNotPositive,
        "zunion" | "zinter" | "zdiff" | "zunionstore" | "zinterstore" | "zdiffstore"
            if generic == KeyError::NumkeysNegative =>
        {
            KeyError::NoInputKey(command)
        }
        _ => generic,
    }
}

/// Fills `out` with the positions of every key of `spec` in `args`.
///
/// Specs whose begin search is `Unknown` (SORT's BY/GET/STORE) are skipped:
/// the caller must rewrite those commands by their own grammar. Specs marked
/// `not_key` name channels, not keys, and are skipped too.
pub fn key_positions<A: AsRef<[u8]>>(spec: &CommandSpec, args: &[A], out: &mut KeyPositions) -> Result<(), KeyError> {
    out.clear();
    if matches!(spec.name, "sort" | "sort_ro") {
        return sort_positions(args, out);
    }
    let argc = args.len() as i64;
    for ks in spec.key_specs {
        if ks.flags & keyspec_flags::NOT_KEY != 0 {
            continue;
        }
        let first = match ks.begin {
            BeginSearch::Index(i) => i as i64,
            BeginSearch::Keyword { keyword, startfrom } => match find_keyword(args, keyword, startfrom as i64) {
                Some(i) => i + 1,
                None => continue,
            },
            BeginSearch::Unknown => continue,
        };
        let (first, last, step) = match ks.find {
            FindKeys::Range { lastkey, keystep, limit } => {
                let (lastkey, limit) = (lastkey as i64, limit as i64);
                let last = if lastkey >= 0 {
                    first + lastkey
                } else if limit <= 1 {
                    argc + lastkey
                } else {
                    first + ((argc - first) / limit + lastkey)
                };
                (first, last, keystep as i64)
            }
            FindKeys::Keynum { keynumidx, firstkey, keystep } => {
                let idx = first + keynumidx as i64;
                let raw = usize::try_from(idx).ok().and_then(|i| args.get(i));
                let Some(raw) = raw else { continue };
                let numkeys =
                    parse_i64(raw.as_ref()).ok_or_else(|| numkeys_error(spec.name, KeyError::NumkeysNotInteger))?;
                // Some commands refuse 0 keys here; the rest let Redis say so.
                let at_least_one =
                    numkeys_error(spec.name, KeyError::NumkeysNotInteger) == KeyError::NumkeysNotPositive;
                if numkeys < 0 || (numkeys == 0 && at_least_one) {
                    return Err(numkeys_error(spec.name, KeyError::NumkeysNegative));
                }
                let start = first + firstkey as i64;
                let step = keystep as i64;
                if numkeys == 0 {
                    continue;
                }
                let last = start + (numkeys - 1) * step;
                if last >= argc {
                    return Err(KeyError::NumkeysTooLarge);
                }
                (start, last, step)
            }
            FindKeys::Unknown => continue,
        };
        if step <= 0 || first < 1 {
            continue;
        }
        // Arity was checked, so a range past the end means the optional keys
        // are absent (Redis treats the spec as matching nothing).
        let last = last.min(argc - 1);
        let mut i = first;
        while i <= last {
            out.push(i as usize);
            i += step;
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(())
}

/// SORT's keys hide in its grammar (key specs say `unknown`): the sorted key,
/// BY and GET patterns (which name other keys; `GET #` is the element itself)
/// and the STORE destination. All of them get the tenant's prefix.
fn sort_positions<A: AsRef<[u8]>>(args: &[A], out: &mut KeyPositions) -> Result<(), KeyError> {
    out.push(1);
    let mut i = 2;
    while i < args.len() {
        let arg = args[i].as_ref();
        let has_value = i + 1 < args.len();
        if arg.eq_ignore_ascii_case(b"asc") || arg.eq_ignore_ascii_case(b"desc") || arg.eq_ignore_ascii_case(b"alpha") {
            i += 1;
        } else if arg.eq_ignore_ascii_case(b"limit") && i + 2 < args.len() {
            i += 3;
        } else if (arg.eq_ignore_ascii_case(b"by") || arg.eq_ignore_ascii_case(b"store")) && has_value {
            out.push(i + 1);
            i += 2;
        } else if arg.eq_ignore_ascii_case(b"get") && has_value {
            if args[i + 1].as_ref() != b"#" {
                out.push(i + 1);
            }
            i += 2;
        } else {
            return Err(KeyError::Syntax);
        }
    }
    Ok(())
}

fn find_keyword<A: AsRef<[u8]>>(args: &[A], keyword: &[u8], startfrom: i64) -> Option<i64> {
    let argc = args.len() as i64;
    let (mut i, end, step) = if startfrom >= 0 { (startfrom, argc - 1, 1) } else { (argc + startfrom, 1, -1) };
    while (step > 0 && i <= end) || (step < 0 && i >= end) {
        if i >= 1 && i < argc && args[i as usize].as_ref().eq_ignore_ascii_case(keyword) {
            return Some(i);
        }
        i += step;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::lookup;

    fn keys(cmd: &str) -> Result<Vec<usize>, KeyError> {
        let args: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
        let spec = lookup(args[0]).unwrap();
        let spec =
            if spec.subcommands.is_empty() { spec } else { crate::command::lookup_subcommand(spec, args[1]).unwrap() };
        let mut out = Vec::new();
        key_positions(spec, &args, &mut out).map(|_| out)
    }

    #[test]
    fn positions_follow_redis_key_specs() {
        assert_eq!(keys("GET k").unwrap(), vec![1]);
        assert_eq!(keys("MSET a 1 b 2").unwrap(), vec![1, 3]);
        assert_eq!(keys("DEL a b c").unwrap(), vec![1, 2, 3]);
        assert_eq!(keys("LMPOP 2 a b LEFT COUNT 2").unwrap(), vec![2, 3]);
        assert_eq!(keys("ZUNIONSTORE d 2 a b WEIGHTS 1 2").unwrap(), vec![1, 3, 4]);
        assert_eq!(keys("XREAD COUNT 2 STREAMS s1 s2 0 0").unwrap(), vec![4, 5]);
        assert_eq!(keys("GEORADIUS g 0 0 1 km STORE dst").unwrap(), vec![1, 7]);
        assert_eq!(keys("OBJECT ENCODING k").unwrap(), vec![2]);
        assert_eq!(keys("EVAL s 0").unwrap(), Vec::<usize>::new());
        assert_eq!(keys("BITOP AND d a b").unwrap(), vec![2, 3, 4]);
        assert_eq!(keys("SPUBLISH ch msg").unwrap(), Vec::<usize>::new());
        assert_eq!(keys("SORT l BY w_* LIMIT 0 5 GET # GET o_*->f ALPHA STORE d").unwrap(), vec![1, 3, 10, 13]);
        assert_eq!(keys("SORT_RO l GET x"), Ok(vec![1, 3]));
        assert_eq!(keys("SORT l BY"), Err(KeyError::Syntax));
    }

    #[test]
    fn bad_numkeys_is_an_error_not_a_pass_through() {
        assert_eq!(keys("LMPOP x a LEFT"), Err(KeyError::NumkeysNotPositive));
        assert_eq!(keys("EVAL s x"), Err(KeyError::NumkeysNotInteger));
        assert_eq!(keys("EVAL s -1"), Err(KeyError::NumkeysNegative));
        assert_eq!(keys("LMPOP 5 a LEFT"), Err(KeyError::NumkeysTooLarge));
    }
}
