//! Buffers lent to connections only while they hold bytes.
//!
//! An idle client connection should cost next to nothing: its read buffer
//! and its encoding scratch go back here as soon as they are empty, and the
//! next connection with bytes to read or requests to encode takes one. A
//! few are kept per thread (tenantry serves on one), so a busy connection
//! takes and gives back the same buffer without reaching the allocator, and
//! memory follows the connections that are busy at once, not those open.

use bytes::BytesMut;
use std::cell::RefCell;

/// A kind of buffer, by the capacity it is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A client's read buffer.
    Read,
    /// A client's encoding scratch for backend batches.
    Scratch,
}

impl Class {
    const fn capacity(self) -> usize {
        match self {
            Class::Read => 16 * 1024,
            Class::Scratch => 1024,
        }
    }

    /// Room enough to use a pooled buffer as it is: below this, it is
    /// grown (or reclaimed) to `capacity`.
    const fn low(self) -> usize {
        match self {
            Class::Read => 4 * 1024,
            Class::Scratch => 128,
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Buffers kept per class and thread at most.
const KEPT: usize = 32;

thread_local! {
    static POOLS: RefCell<[Vec<BytesMut>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// A buffer of `class` with room to use (one from the pool when there is one).
pub fn take(class: Class) -> BytesMut {
    let mut buf = POOLS.with(|p| p.borrow_mut()[class.index()].pop()).unwrap_or_default();
    // A pooled buffer may still share its allocation with bytes split off
    // it (a request still queued, a batch not yet written): what is left
    // after them is used as it is while there is enough of it, so clients
    // sending at once share one allocation; below that, `reserve` reclaims
    // it in place if it is no longer shared, or allocates a new one.
    if buf.capacity() < class.low() {
        buf.reserve(class.capacity());
    }
    buf
}

/// Gives back an empty buffer; `buf` is left without one.
pub fn give(class: Class, buf: &mut BytesMut) {
    debug_assert!(buf.is_empty());
    if buf.capacity() == 0 {
        return;
    }
    let buf = std::mem::take(buf);
    POOLS.with(|p| {
        let pool = &mut p.borrow_mut()[class.index()];
        if pool.len() < KEPT {
            pool.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_is_taken_again_with_its_allocation() {
        let mut a = take(Class::Read);
        assert!(a.capacity() >= Class::Read.capacity());
        a.extend_from_slice(b"GET k\r\n");
        let _ = a.split();
        let ptr = a.as_ptr() as usize;
        give(Class::Read, &mut a);
        assert_eq!(a.capacity(), 0, "the connection keeps nothing");
        let b = take(Class::Read);
        // The same allocation, used on from where the request ended.
        assert_eq!(b.as_ptr() as usize, ptr);
        assert!(b.capacity() >= Class::Read.capacity() - 7);
    }

    #[test]
    fn a_buffer_still_shared_is_not_written_over() {
        let mut a = take(Class::Scratch);
        a.extend_from_slice(b"held");
        let held = a.split().freeze();
        give(Class::Scratch, &mut a);
        let mut b = take(Class::Scratch);
        b.extend_from_slice(b"next");
        assert_eq!(&held[..], b"held");
    }

    #[test]
    fn the_pool_keeps_a_bounded_number() {
        let mut bufs: Vec<BytesMut> = (0..KEPT + 10).map(|_| BytesMut::with_capacity(64)).collect();
        for b in &mut bufs {
            give(Class::Scratch, b);
        }
        assert_eq!(POOLS.with(|p| p.borrow()[Class::Scratch.index()].len()), KEPT);
    }
}
