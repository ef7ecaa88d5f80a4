//! Arbitrary client bytes: the parser and classifier never panic, and every
//! forwarded request re-parses with exactly its keys prefixed.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tenantry_protocol::{classify, encode, Action, Limits, Namespace, RequestParser};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_bulk_bytes: 4096, max_args: 64, max_inline_bytes: 4096 };
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::from(data);
    let ns = Namespace::new("fz:").unwrap();
    let mut keys = Vec::new();
    while let Ok(Some(req)) = parser.parse(&mut buf) {
        if let Action::Forward { .. } = classify(&req, &mut keys) {
            let mut wire = BytesMut::new();
            encode::command(&mut wire, &req.args, &keys, &ns);
            let back = RequestParser::new(Limits::default()).parse(&mut wire).unwrap().unwrap();
            assert_eq!(back.args.len(), req.args.len());
            for (i, (b, a)) in back.args.iter().zip(&req.args).enumerate() {
                if keys.contains(&i) {
                    assert_eq!(ns.strip(b), Some(a.as_ref()));
                } else {
                    assert_eq!(b, a);
                }
            }
        }
    }
});
