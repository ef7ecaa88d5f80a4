//! The write side of a client connection: replies in request order.

use crate::backend::{BackendError, BatchReply, NodePool};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tenantry_protocol::reply::reply_len;
use tenantry_protocol::strip::strip_reply;
use tenantry_protocol::{Namespace, ReplyKeys};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// One entry of a client's reply queue, in request order.
pub enum Pending {
    /// Replies tenantry made itself, for `count` requests.
    Local { bytes: Bytes, count: usize },
    /// Replies a backend will send for a batch of `count` requests.
    Backend(BackendReplies),
    /// Write everything before this, then close the connection.
    Close,
}

pub struct BackendReplies {
    pub rx: oneshot::Receiver<BatchReply>,
    pub count: usize,
    /// (index in the batch, where its reply holds keys to strip)
    pub strip: Vec<(usize, ReplyKeys)>,
    pub namespace: Namespace,
    pub node: Arc<NodePool>,
}

/// Replies gathered before a write; larger replies are written straight through.
const GATHER: usize = 64 * 1024;

/// Writes replies in queue order; returns when the queue closes, on `Close`,
/// or when the client's socket fails. `permits` get back one per reply
/// written: the reader stops reading while too many are outstanding.
pub async fn write_replies(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    permits: Arc<Semaphore>,
) {
    let mut out = BytesMut::with_capacity(GATHER);
    let mut done = 0usize;
    loop {
        let entry = match rx.try_recv() {
            Ok(e) => e,
            Err(_) => {
                if flush(&mut wr, &mut out, &permits, &mut done).await.is_err() {
                    return;
                }
                match rx.recv().await {
                    Some(e) => e,
                    None => break,
                }
            }
        };
        match entry {
            Pending::Local { bytes, count } => {
                out.extend_from_slice(&bytes);
                done += count;
            }
            Pending::Backend(mut b) => {
                let reply = match b.rx.try_recv() {
                    Ok(r) => Ok(r),
                    Err(oneshot::error::TryRecvError::Empty) => {
                        // Send what is ready before waiting on the backend.
                        if flush(&mut wr, &mut out, &permits, &mut done).await.is_err() {
                            return;
                        }
                        (&mut b.rx).await.map_err(|_| ())
                    }
                    Err(oneshot::error::TryRecvError::Closed) => Err(()),
                };
                match reply {
                    Ok(Ok(bytes)) if b.strip.is_empty() && bytes.len() >= GATHER => {
                        if flush(&mut wr, &mut out, &permits, &mut done).await.is_err()
                            || wr.write_all(&bytes).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(Ok(bytes)) if b.strip.is_empty() => out.extend_from_slice(&bytes),
                    Ok(Ok(bytes)) => strip_batch(&bytes, &b, &mut out),
                    Ok(Err(e)) => errors(&mut out, &e, b.count),
                    Err(()) => errors(&mut out, &b.node.lost(), b.count),
                }
                done += b.count;
            }
            Pending::Close => break,
        }
        if out.len() >= GATHER && flush(&mut wr, &mut out, &permits, &mut done).await.is_err() {
            return;
        }
    }
    let _ = flush(&mut wr, &mut out, &permits, &mut done).await;
    let _ = wr.shutdown().await;
}

async fn flush(
    wr: &mut OwnedWriteHalf,
    out: &mut BytesMut,
    permits: &Semaphore,
    done: &mut usize,
) -> std::io::Result<()> {
    if !out.is_empty() {
        wr.write_all(out).await?;
        out.clear();
    }
    if *done > 0 {
        permits.add_permits(*done);
        *done = 0;
    }
    Ok(())
}

fn errors(out: &mut BytesMut, e: &BackendError, count: usize) {
    let line = format!("-ERR {e}\r\n");
    for _ in 0..count {
        out.extend_from_slice(line.as_bytes());
    }
}

fn strip_batch(bytes: &[u8], b: &BackendReplies, out: &mut BytesMut) {
    let mut pos = 0;
    let mut fixes = b.strip.iter().peekable();
    for i in 0..b.count {
        // The backend connection already framed exactly `count` replies.
        let Ok(Some(len)) = reply_len(&bytes[pos..]) else {
            out.extend_from_slice(&bytes[pos..]);
            return;
        };
        let reply = &bytes[pos..pos + len];
        match fixes.peek() {
            Some((at, kind)) if *at == i => {
                let mark = out.len();
                if strip_reply(*kind, reply, &b.namespace, out).is_err() {
                    out.truncate(mark);
                    out.extend_from_slice(reply);
                }
                fixes.next();
            }
            _ => out.extend_from_slice(reply),
        }
        pos += len;
    }
}
