//! Client-side caching (CLIENT TRACKING). Redis sends a tracking client
//! invalidation messages for the keys it read (or, in BCAST mode, for every
//! key under its prefixes), on the connection that read them; through
//! tenantry that must be a connection of the client's own, so tracking pins
//! the client to one (as WATCH does) for as long as it is on. BCAST prefixes
//! are namespaced (BCAST without a prefix gets the tenant's namespace, never
//! every key), and the key names in invalidations are stripped back.
//!
//! With REDIRECT (what RESP2 clients use), invalidations go to another of
//! the tenant's connections, subscribed to `__redis__:invalidate`: tenantry
//! finds it by its tenantry client id among the tenant's connections (never
//! another tenant's) and redirects to the backend id of its subscriber
//! connection; CLIENT GETREDIR answers the tenantry id back.

use super::batcher::{Forward, Pinned};
use super::Session;
use crate::tenant::TenantRt;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tenantry_protocol::strip::strip_reply;
use tenantry_protocol::{Namespace, ReplyKeys, Request};
use tokio::sync::mpsc;

/// Invalidations read from the backend but not yet taken by the session;
/// past this the client is too slow to trust its cache and is disconnected.
const PUSH_BUFFER: usize = 4096;

/// The pushes of the client's own connection, and the namespace to strip.
pub(super) struct Pushes {
    pub rx: mpsc::Receiver<Bytes>,
    namespace: Namespace,
}

/// CLIENT TRACKING, while on.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tracking {
    /// The tenantry client id its invalidations are redirected to.
    pub redirect: Option<i64>,
}

impl Session {
    /// Pins the client to a backend connection of its own (WATCH, tracking).
    pub(super) fn pin(&mut self, tenant: &Arc<TenantRt>, node: Arc<crate::backend::NodePool>) {
        if self.batcher.pinned.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel(PUSH_BUFFER);
        let conn = node.pinned(self.state.proto, tx);
        self.batcher.pinned = Some(Pinned { node, conn });
        self.pushes = Some(Box::new(Pushes { rx, namespace: tenant.namespace.clone() }));
    }

    /// `CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]`
    pub(super) fn client_tracking(&mut self, tenant: Arc<TenantRt>, req: &Request) {
        let on = match req.args[2].to_ascii_lowercase().as_slice() {
            b"on" => true,
            b"off" => false,
            _ => return self.error("ERR syntax error"),
        };
        let options = &req.args[3..];
        let has = |name: &[u8]| options.iter().any(|a| a.eq_ignore_ascii_case(name));
        let mut args = req.args.clone();
        let mut redirect = None;
        if let Some(i) = (3..args.len()).find(|&i| args[i].eq_ignore_ascii_case(b"redirect")) {
            let Some(raw) = args.get(i + 1) else { return self.error("ERR syntax error") };
            let Some(id) = tenantry_protocol::num::parse_i64(raw) else {
                return self.error("ERR value is not an integer or out of range");
            };
            let target = tenant.clients.all().into_iter().find(|c| c.id as i64 == id);
            let Some(target) = target else {
                return self.error("ERR The client ID you want redirect to does not exist");
            };
            let backend_id = target.subscriber_backend_id.load(std::sync::atomic::Ordering::Relaxed);
            if backend_id == 0 {
                return self.error(
                    "ERR tenantry redirects invalidations only to a connection subscribed to __redis__:invalidate",
                );
            }
            args[i + 1] = Bytes::from(backend_id.to_string());
            redirect = Some(id);
        }
        if !on && self.batcher.pinned.is_none() {
            // Never turned on here: nothing to turn off.
            let proto = self.state.proto;
            return self
                .batcher
                .local(&mut self.replies, |out| tenantry_protocol::encode::Reply { out, proto }.simple("OK"));
        }
        // Each PREFIX value is namespaced; BCAST alone gets the namespace itself.
        let mut keys: Vec<usize> = (4..args.len()).filter(|&i| args[i - 1].eq_ignore_ascii_case(b"prefix")).collect();
        if on && has(b"bcast") && keys.is_empty() {
            args.push(Bytes::from_static(b"PREFIX"));
            args.push(Bytes::new());
            keys.push(args.len() - 1);
        }
        if on && tenant.backend.is_sharded() {
            // Invalidations come from the node holding each key: one
            // connection of the client's own would hear of one node's keys.
            return self.error(&format!(
                "ERR CLIENT TRACKING is not supported on backend '{}': its keys live on several nodes",
                tenant.backend.name()
            ));
        }
        if on {
            self.pin(&tenant, tenant.backend.any_node());
        }
        self.tracking = on.then_some(Tracking { redirect });
        self.state.client.tracking.store(on, std::sync::atomic::Ordering::Relaxed);
        let f = Forward {
            tenant: &tenant,
            node: tenant.backend.any_node(),
            proto: self.state.proto,
            args: &args,
            keys: &keys,
            reply: ReplyKeys::None,
            ttl: None,
            tally: None,
            freed: None,
            span: None,
            share: None,
            fill: None,
        };
        self.batcher.forward(&mut self.replies, f);
    }

    /// CLIENT GETREDIR: the tenantry id redirected to (the backend knows another).
    pub(super) fn getredir(&mut self) -> bool {
        let Some(id) = self.tracking.and_then(|t| t.redirect) else { return false };
        let proto = self.state.proto;
        self.batcher.local(&mut self.replies, |out| tenantry_protocol::encode::Reply { out, proto }.integer(id));
        true
    }

    /// A push from the client's own connection (an invalidation), or `None`
    /// when that connection is gone. Returns false if the client must be
    /// disconnected: it was tracking, and its cache can no longer be trusted.
    pub(super) fn tracking_push(&mut self, push: Option<Bytes>) -> bool {
        let Some(p) = &self.pushes else { return true };
        match push {
            Some(frame) => {
                let mut out = BytesMut::with_capacity(frame.len());
                if strip_reply(ReplyKeys::PubSub, &frame, &p.namespace, &mut out).is_err() {
                    out.clear();
                    out.extend_from_slice(&frame);
                }
                self.batcher.local(&mut self.replies, |o| o.extend_from_slice(&out));
                true
            }
            None => {
                self.pushes = None;
                self.tracking.is_none()
            }
        }
    }
}
