//! Property tests of the pure core: rewriting for every command of the table,
//! the request parser, and the reply scanner against redis-protocol's decoder.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tenantry_protocol::command::{self, CommandSpec, FindKeys, COMMANDS};
use tenantry_protocol::reply::{reply_len, ReplyScanner};
use tenantry_protocol::{classify, encode, Action, Limits, Namespace, Request, RequestParser};

/// Every command and subcommand of the table.
fn all_specs() -> Vec<&'static CommandSpec> {
    COMMANDS
        .iter()
        .flat_map(|c| if c.subcommands.is_empty() { vec![c] } else { c.subcommands.iter().collect() })
        .collect()
}

/// Words that make key specs match: keywords, numbers, plain values.
fn word() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..12),
        1 => prop_oneof![
            Just(b"STREAMS".to_vec()), Just(b"STORE".to_vec()), Just(b"STOREDIST".to_vec()),
            Just(b"KEYS".to_vec()), Just(b"BY".to_vec()), Just(b"GET".to_vec()), Just(b"#".to_vec()),
            Just(b"LIMIT".to_vec()), Just(b"0".to_vec()), Just(b"1".to_vec()), Just(b"2".to_vec()),
        ],
    ]
}

/// An invocation of `spec`: its name (and subcommand), then enough words for
/// its arity, with numkeys arguments set to counts that fit.
fn invocation(spec: &'static CommandSpec) -> impl Strategy<Value = Vec<Vec<u8>>> {
    let min = spec.arity.unsigned_abs() as usize;
    let max = if spec.arity > 0 { min } else { min + 6 };
    (min..=max).prop_flat_map(|n| proptest::collection::vec(word(), n)).prop_flat_map(move |mut args| {
        let mut name = spec.name.split('|');
        args[0] = name.next().unwrap().as_bytes().to_vec();
        if let Some(sub) = name.next() {
            args[1] = sub.as_bytes().to_vec();
        }
        let argc = args.len();
        (Just(args), proptest::collection::vec(0usize..8, spec.key_specs.len())).prop_map(move |(mut args, picks)| {
            for (ks, pick) in spec.key_specs.iter().zip(picks) {
                if let (command::BeginSearch::Index(i), FindKeys::Keynum { keynumidx, firstkey, .. }) =
                    (ks.begin, ks.find)
                {
                    let idx = i as usize + keynumidx as usize;
                    let room = argc.saturating_sub(i as usize + firstkey as usize);
                    if idx < argc {
                        args[idx] = (pick % (room + 1)).to_string().into_bytes();
                    }
                }
            }
            args
        })
    })
}

fn any_invocation() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let specs = all_specs();
    (0..specs.len()).prop_flat_map(move |i| invocation(specs[i]))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// For every command: key positions carry the namespace, every other
    /// argument is unchanged, and stripping the namespace gives the client's key.
    #[test]
    fn rewriting_prefixes_exactly_the_keys(args in any_invocation()) {
        let ns = Namespace::new("tenant:v1:").unwrap();
        let req = Request { args: args.iter().map(|a| Bytes::copy_from_slice(a)).collect() };
        let mut keys = Vec::new();
        if let Action::Forward { .. } = classify(&req, &mut keys) {
            let mut wire = BytesMut::new();
            encode::command(&mut wire, &req.args, &keys, &ns);
            let mut parser = RequestParser::new(Limits::default());
            let parsed = parser.parse(&mut wire).unwrap().expect("one whole request");
            prop_assert!(wire.is_empty());
            prop_assert_eq!(parsed.args.len(), args.len());
            for (i, (sent, orig)) in parsed.args.iter().zip(&args).enumerate() {
                if keys.contains(&i) {
                    prop_assert_eq!(ns.strip(sent), Some(orig.as_slice()), "key at {}", i);
                } else {
                    prop_assert_eq!(sent.as_ref(), orig.as_slice(), "argument {} changed", i);
                }
            }
        }
    }

    /// Any split of a pipeline into reads yields the same requests.
    #[test]
    fn parser_is_independent_of_read_boundaries(reqs in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..5), 1..6), cut in any::<prop::sample::Index>()) {
        let mut wire = Vec::new();
        for r in &reqs {
            let args: Vec<&[u8]> = r.iter().map(|a| a.as_slice()).collect();
            let mut out = BytesMut::new();
            encode::command(&mut out, &args, &[], &Namespace::new("x").unwrap());
            wire.extend_from_slice(&out);
        }
        let cut = cut.index(wire.len() + 1);
        let mut parser = RequestParser::new(Limits::default());
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut got = Vec::new();
        while let Some(r) = parser.parse(&mut buf).unwrap() { got.push(r); }
        buf.extend_from_slice(&wire[cut..]);
        while let Some(r) = parser.parse(&mut buf).unwrap() { got.push(r); }
        let got: Vec<Vec<Vec<u8>>> = got.iter().map(|r| r.args.iter().map(|a| a.to_vec()).collect()).collect();
        prop_assert_eq!(got, reqs);
    }

    /// Arbitrary bytes never panic the parser, and it never claims more bytes than it has.
    #[test]
    fn parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut parser = RequestParser::new(Limits { max_bulk_bytes: 64, max_args: 8, max_inline_bytes: 64 });
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = parser.parse(&mut buf) {}
    }

    /// The scanner finds the same reply boundary as redis-protocol's decoder.
    #[test]
    fn scanner_agrees_with_redis_protocol(frame in resp3_frame(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut wire = frame.clone();
        wire.extend_from_slice(&tail);
        let theirs = redis_protocol::resp3::decode::complete::decode_range(&wire).expect("valid frame").expect("complete");
        prop_assert_eq!(reply_len(&wire).unwrap(), Some(theirs.1));
        // Fed byte by byte, the resumable scanner ends at the same place.
        let mut s = ReplyScanner::new();
        for cut in 0..frame.len() {
            prop_assert_eq!(s.scan(&frame[..cut]).unwrap(), None);
        }
        prop_assert_eq!(s.scan(&frame).unwrap(), Some(frame.len()));
    }

    #[test]
    fn scanner_never_panics(data in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = reply_len(&data);
    }
}

fn aggregate(kind: char, items: &[Vec<u8>]) -> Vec<u8> {
    let mut v = format!("{kind}{}\r\n", items.len()).into_bytes();
    items.iter().for_each(|i| v.extend_from_slice(i));
    v
}

fn hashable() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-z0-9]{0,8}".prop_map(|s| format!("+{s}\r\n").into_bytes()),
        any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
        "[a-z0-9]{0,8}".prop_map(|s| format!("${}\r\n{s}\r\n", s.len()).into_bytes()),
    ]
}

/// RESP3 frames as Redis sends them. (RESP2's `$-1`/`*-1` nulls, which the
/// RESP3 decoder rejects, are covered by the scanner's unit tests.)
fn resp3_frame() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        "[a-zA-Z0-9 ]{0,10}".prop_map(|s| format!("+{s}\r\n").into_bytes()),
        "[a-zA-Z0-9 ]{0,10}".prop_map(|s| format!("-ERR {s}\r\n").into_bytes()),
        any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(|b| {
            let mut v = format!("${}\r\n", b.len()).into_bytes();
            v.extend_from_slice(&b);
            v.extend_from_slice(b"\r\n");
            v
        }),
        Just(b"_\r\n".to_vec()),
        Just(b"#t\r\n".to_vec()),
        Just(b",1.5\r\n".to_vec()),
        Just(b"(12345678901234567890\r\n".to_vec()),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|items| aggregate('*', &items)),
            // Set members and map keys must be hashable for the decoder.
            proptest::collection::vec(hashable(), 0..6).prop_map(|items| aggregate('~', &items)),
            proptest::collection::vec((hashable(), inner), 0..4).prop_map(|pairs| {
                let mut v = format!("%{}\r\n", pairs.len()).into_bytes();
                for (k, val) in &pairs {
                    v.extend_from_slice(k);
                    v.extend_from_slice(val);
                }
                v
            }),
        ]
    })
}

proptest! {
    /// Every byte escaped matches exactly itself; `*` matches anything; a
    /// prefix then `*` matches what starts with it.
    #[test]
    fn glob_escapes_and_stars(text in proptest::collection::vec(any::<u8>(), 0..40), cut in 0usize..40) {
        use tenantry_protocol::glob::matches;
        let escaped: Vec<u8> = text.iter().flat_map(|&b| [b'\\', b]).collect();
        prop_assert!(matches(&escaped, &text));
        prop_assert!(matches(b"*", &text));
        let cut = cut.min(text.len());
        let mut prefix: Vec<u8> = text[..cut].iter().flat_map(|&b| [b'\\', b]).collect();
        prefix.push(b'*');
        prop_assert!(matches(&prefix, &text));
        let mut longer = escaped.clone();
        longer.extend_from_slice(b"?");
        prop_assert!(!matches(&longer, &text));
    }
}

mod sharding {
    use super::*;
    use tenantry_protocol::cluster::{key_slot, parse_redirect};
    use tenantry_protocol::merge::{merge, scan_cursor, split_scan_cursor, Merge};

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..20),
            // Keys with hash tags, empty tags and stray braces.
            ("[a-z{}]{0,6}", "[a-z{}]{0,6}").prop_map(|(a, b)| format!("{a}{{{b}}}x").into_bytes()),
        ]
    }

    proptest! {
        /// The slot tenantry routes by is Redis's slot of the key on the wire.
        #[test]
        fn key_slot_is_the_slot_of_the_namespaced_key(k in key(), ns in "[a-z:]{1,8}") {
            let ns = Namespace::new(&ns).unwrap();
            let wire = ns.prefixed(&k);
            prop_assert_eq!(key_slot(&ns, &k), redis_protocol::redis_keyslot(&wire));
        }

        /// Keys sharing a non-empty hash tag share a slot in every namespace.
        #[test]
        fn shared_tags_share_slots(tag in "[a-z0-9]{1,8}", a in "[a-z]{0,5}", b in "[a-z]{0,5}", ns in "[a-z:]{1,8}") {
            let ns = Namespace::new(&ns).unwrap();
            let (ka, kb) = (format!("{a}{{{tag}}}1"), format!("{b}{{{tag}}}2"));
            // Only when the tag is the first `{` of each key.
            prop_assume!(!a.contains('{') && !b.contains('{'));
            prop_assert_eq!(key_slot(&ns, ka.as_bytes()), key_slot(&ns, kb.as_bytes()));
        }

        /// Any bytes: never a panic, and a redirect only from an error line.
        #[test]
        fn redirect_parsing_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Some(r) = parse_redirect(&bytes) {
                prop_assert!(bytes.starts_with(b"-"));
                prop_assert!((r.slot as usize) < 16384);
            }
        }

        /// A SCAN cursor names the node and its cursor, and moves to the next
        /// node when one is done.
        #[test]
        fn scan_cursors_round_trip(node in 0usize..64, extra in 1usize..64, cursor in 0u64..(1 << 50)) {
            let nodes = node + extra;
            let c = scan_cursor(node, nodes, cursor).unwrap();
            if cursor == 0 {
                prop_assert_eq!(split_scan_cursor(c), (node + 1, 0));
            } else {
                prop_assert_eq!(split_scan_cursor(c), (node, cursor));
            }
        }

        /// Split MGET replies merge back in the client's key order.
        #[test]
        fn mget_parts_merge_in_key_order(values in proptest::collection::vec(proptest::option::of("[a-z]{0,4}"), 1..12), parts in 1usize..4) {
            let mut per_part: Vec<Vec<Option<String>>> = vec![Vec::new(); parts];
            let mut order = Vec::new();
            for (i, v) in values.iter().enumerate() {
                let p = i % parts;
                order.push((p, per_part[p].len()));
                per_part[p].push(v.clone());
            }
            let encode_array = |vs: &[Option<String>]| {
                let mut out = format!("*{}\r\n", vs.len());
                for v in vs {
                    match v {
                        Some(s) => out.push_str(&format!("${}\r\n{s}\r\n", s.len())),
                        None => out.push_str("$-1\r\n"),
                    }
                }
                Bytes::from(out)
            };
            let replies: Vec<Bytes> = per_part.iter().map(|vs| encode_array(vs)).collect();
            prop_assert_eq!(merge(&Merge::Arrays { order }, &replies), encode_array(&values));
        }
    }
}

/// Redis's `string2ll`, as the standard library can say it: digits after an
/// optional `-`, no leading zero but "0" itself, and in range.
fn string2ll(raw: &[u8]) -> Option<i64> {
    let digits = raw.strip_prefix(b"-").unwrap_or(raw);
    let plain = !digits.is_empty() && digits.iter().all(u8::is_ascii_digit);
    let zero_ok = digits[..digits.len().min(1)] != *b"0" || raw == b"0";
    if !plain || !zero_ok {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

proptest! {
    #[test]
    fn integers_parse_as_redis_reads_them(n in any::<i64>()) {
        prop_assert_eq!(tenantry_protocol::num::parse_i64(n.to_string().as_bytes()), Some(n));
    }

    #[test]
    fn integer_parsing_agrees_with_string2ll(raw in prop_oneof![
        proptest::collection::vec(prop_oneof![Just(b'-'), Just(b'0'), b'0'..=b'9', any::<u8>()], 0..22),
        any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        any::<u64>().prop_map(|n| n.to_string().into_bytes()),
    ]) {
        prop_assert_eq!(tenantry_protocol::num::parse_i64(&raw), string2ll(&raw));
    }
}
