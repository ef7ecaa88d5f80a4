//! Bytes waiting to be written to a socket: small pieces are gathered into
//! one buffer, large ones are kept as they are (never copied), and all of it
//! goes out in vectored, non-blocking writes.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

/// Pieces at least this large are queued without copying.
const NO_COPY: usize = 16 * 1024;
/// At most this many slices per `writev`.
const MAX_SLICES: usize = 64;

#[derive(Default)]
pub struct OutQueue {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
    /// Every byte written so far.
    taken: u64,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Every byte written so far: whether the client reads.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// The buffer small writes are gathered in; call `commit` after writing to it.
    pub fn tail(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    /// Accounts for bytes appended through `tail()`.
    pub fn commit(&mut self, before: usize) {
        self.len += self.tail.len() - before;
    }

    pub fn extend(&mut self, data: &[u8]) {
        self.tail.extend_from_slice(data);
        self.len += data.len();
    }

    pub fn push(&mut self, data: Bytes) {
        if data.len() < NO_COPY {
            return self.extend(&data);
        }
        self.seal_tail();
        self.len += data.len();
        self.chunks.push_back(data);
    }

    /// Everything queued, in the order it would be written.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all: Vec<u8> = self.chunks.iter().flat_map(|c| c.iter().copied()).collect();
        all.extend_from_slice(&self.tail);
        all
    }

    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
    }

    /// Writes as much as the socket takes now. `Ok(())` with bytes left means
    /// the socket is full: wait for `writable()` and call again.
    pub fn try_write(&mut self, stream: &TcpStream) -> io::Result<()> {
        while !self.is_empty() {
            if self.chunks.is_empty() {
                // The common case, small replies only: one plain write.
                match stream.try_write(&self.tail) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.advance(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                }
                continue;
            }
            let n = match stream.try_write_vectored(&self.slices()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            self.advance(n);
        }
        Ok(())
    }

    /// Writes what `w` takes of the queue in one vectored write (TLS: into
    /// rustls's buffer, which then needs a flush).
    pub fn poll_write<W: AsyncWrite>(&mut self, w: Pin<&mut W>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let n = ready!(w.poll_write_vectored(cx, &self.slices()))?;
        if n == 0 && !self.is_empty() {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.advance(n);
        Poll::Ready(Ok(n))
    }

    /// The queue's first pieces, up to `MAX_SLICES`, for one `writev`.
    fn slices(&self) -> Vec<IoSlice<'_>> {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(MAX_SLICES.min(self.chunks.len() + 1));
        slices.extend(self.chunks.iter().take(MAX_SLICES - 1).map(|c| IoSlice::new(c)));
        if slices.len() == self.chunks.len() && !self.tail.is_empty() {
            slices.push(IoSlice::new(&self.tail));
        }
        slices
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        self.taken += n as u64;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(front) => {
                    let take = n.min(front.len());
                    front.advance(take);
                    n -= take;
                    if front.is_empty() {
                        self.chunks.pop_front();
                    }
                }
                None => {
                    self.tail.advance(n);
                    n = 0;
                }
            }
        }
        if self.tail.is_empty() && self.tail.capacity() > 4 * NO_COPY {
            // Do not keep a huge buffer around after a burst.
            self.tail = BytesMut::new();
        }
    }
}
