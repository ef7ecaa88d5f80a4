//! The session's reply queue under arbitrary sequences of local replies,
//! backend batches (some with hidden replies of tenantry's own), answers in
//! any order, lost connections and drains: the client must read exactly one
//! reply per request, in request order (see `order_check`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry_proxy::order_check::{ops, run};

fuzz_target!(|data: &[u8]| {
    if let Err(e) = run(&ops(data)) {
        panic!("{e}");
    }
});
