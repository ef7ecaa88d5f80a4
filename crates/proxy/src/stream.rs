//! A connection, plain TCP or TLS, to a client or a backend. Plain TCP keeps
//! its readiness-based, non-blocking writes (the fast path, no extra
//! buffer); TLS goes through rustls's buffers, with a flush owed after
//! every write until it has gone out.

use crate::out_queue::OutQueue;
use bytes::BytesMut;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl From<tokio_rustls::client::TlsStream<TcpStream>> for Stream {
    fn from(s: tokio_rustls::client::TlsStream<TcpStream>) -> Self {
        Stream::Tls(Box::new(TlsStream::Client(s)))
    }
}

impl From<tokio_rustls::server::TlsStream<TcpStream>> for Stream {
    fn from(s: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        Stream::Tls(Box::new(TlsStream::Server(s)))
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if matches!(self, Stream::Plain(_)) { "plain" } else { "tls" };
        f.debug_struct("Stream").field("kind", &kind).field("peer", &self.tcp().peer_addr().ok()).finish()
    }
}

impl Stream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    /// Writes all of `bytes` and flushes them (TLS holds bytes until a flush).
    pub async fn send_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.write_all(bytes).await?;
        self.flush().await
    }

    /// A read half and a write half, to be polled from one task.
    pub fn split(&mut self) -> (ReadPart<'_>, WritePart<'_>) {
        match self {
            Stream::Plain(s) => {
                let (r, w) = s.split();
                (ReadPart::Plain(r), WritePart { inner: WriteInner::Plain(w), flush_owed: false })
            }
            Stream::Tls(s) => {
                let (r, w) = tokio::io::split(&mut **s);
                (ReadPart::Tls(r), WritePart { inner: WriteInner::Tls(w), flush_owed: false })
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

pub enum ReadPart<'a> {
    Plain(tokio::net::tcp::ReadHalf<'a>),
    Tls(tokio::io::ReadHalf<&'a mut TlsStream<TcpStream>>),
}

impl ReadPart<'_> {
    /// Ready when a read may find bytes: for plain TCP, the socket's read
    /// readiness (so a buffer is lent only once there is something to
    /// read); for TLS always, since rustls may hold bytes already read.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ReadPart::Plain(r) => r.as_ref().poll_read_ready(cx),
            ReadPart::Tls(_) => Poll::Ready(Ok(())),
        }
    }

    /// Reads into `buf`'s spare room; a short read clears readiness.
    pub fn poll_read_buf(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        tokio_util::io::poll_read_buf(Pin::new(self), cx, buf)
    }
}

impl AsyncRead for ReadPart<'_> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadPart::Plain(r) => Pin::new(r).poll_read(cx, buf),
            ReadPart::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

pub struct WritePart<'a> {
    inner: WriteInner<'a>,
    /// TLS: bytes handed to rustls may still sit in its buffer.
    flush_owed: bool,
}

enum WriteInner<'a> {
    Plain(tokio::net::tcp::WriteHalf<'a>),
    Tls(tokio::io::WriteHalf<&'a mut TlsStream<TcpStream>>),
}

impl WritePart<'_> {
    /// True while bytes are owed to the peer: queued, or (TLS) not flushed.
    pub fn owes(&self, out: &OutQueue) -> bool {
        !out.is_empty() || self.flush_owed
    }

    /// Writes as much of `out` as goes now, without waiting.
    pub fn try_send(&mut self, out: &mut OutQueue) -> io::Result<()> {
        match &mut self.inner {
            WriteInner::Plain(w) => out.try_write(w.as_ref()),
            WriteInner::Tls(_) => match self.poll_send(&mut Context::from_waker(std::task::Waker::noop()), out) {
                Poll::Ready(r) => r,
                Poll::Pending => Ok(()),
            },
        }
    }

    /// Writes `out` and flushes; ready once all of it has gone out.
    pub fn poll_send(&mut self, cx: &mut Context<'_>, out: &mut OutQueue) -> Poll<io::Result<()>> {
        match &mut self.inner {
            WriteInner::Plain(w) => loop {
                if out.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                ready!(w.as_ref().poll_write_ready(cx))?;
                out.try_write(w.as_ref())?;
            },
            WriteInner::Tls(w) => loop {
                if out.is_empty() {
                    if self.flush_owed {
                        ready!(Pin::new(&mut *w).poll_flush(cx))?;
                        self.flush_owed = false;
                    }
                    return Poll::Ready(Ok(()));
                }
                ready!(out.poll_write(Pin::new(&mut *w), cx))?;
                self.flush_owed = true;
            },
        }
    }

    pub async fn send(&mut self, out: &mut OutQueue) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_send(cx, out)).await
    }
}
