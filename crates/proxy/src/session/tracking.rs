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
use super::tracking_opts;
use super::Session;
use crate::clients::SubscriberId;
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
    /// Weak: the channel closes when the connection goes.
    tx: mpsc::WeakSender<Bytes>,
    namespace: Namespace,
}

/// CLIENT TRACKING, while on.
#[derive(Debug, Clone)]
pub(super) struct Tracking {
    /// The tenantry client id its invalidations are redirected to.
    pub redirect: Option<i64>,
    pub mode: tracking_opts::Mode,
    /// REDIRECT to a connection not subscribed yet: the backend redirects
    /// to a quiet connection meanwhile, and to the client's subscriber
    /// connection once it has one (`redirect_ready`).
    waiting: Option<Arc<SubscriberId>>,
}

impl Session {
    /// Pins the client to a backend connection of its own (WATCH, tracking).
    pub(super) fn pin(&mut self, tenant: &Arc<TenantRt>, node: Arc<crate::backend::NodePool>) {
        if self.batcher.pinned.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel(PUSH_BUFFER);
        let weak = tx.downgrade();
        let conn = node.pinned(self.state.proto, tx);
        self.batcher.pinned = Some(Pinned { node, conn });
        self.pushes = Some(Box::new(Pushes { rx, tx: weak, namespace: tenant.namespace.clone() }));
    }

    /// `CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]`
    pub(super) fn client_tracking(&mut self, tenant: Arc<TenantRt>, req: &Request) {
        let parsed = match tracking_opts::parse(&req.args) {
            Ok(p) => p,
            Err(e) => return self.error(&e.0),
        };
        let mut args = req.args.clone();
        let mut redirect = None;
        let mut waiting = None;
        if let Some(i) = parsed.redirect {
            let Some(id) = tenantry_protocol::num::parse_i64(&args[i]) else {
                return self.error("ERR value is not an integer or out of range");
            };
            let target = tenant.clients.all().into_iter().find(|c| c.id as i64 == id);
            let Some(target) = target else {
                return self.error("ERR The client ID you want redirect to does not exist");
            };
            let mut backend_id = target.subscriber_backend_id.get();
            if backend_id == 0 {
                // Not subscribed (yet): Redis would drop its invalidations
                // until it is, as a quiet connection of tenantry's does.
                let Some(quiet) = tenant.backend.any_node().quiet_id() else {
                    return self.error("ERR tenantry cannot redirect invalidations now: retry in a moment");
                };
                backend_id = quiet;
                waiting = Some(target.subscriber_backend_id.clone());
            }
            args[i] = Bytes::from(backend_id.to_string());
            redirect = Some(id);
        }
        let proto = self.state.proto;
        if !parsed.on {
            self.tracking = None;
            self.state.client.tracking.store(false, std::sync::atomic::Ordering::Relaxed);
            if self.batcher.pinned.is_none() {
                // Never turned on here: nothing to turn off.
                return self
                    .batcher
                    .local(&mut self.replies, |out| tenantry_protocol::encode::Reply { out, proto }.simple("OK"));
            }
            return self.forward_tracking(&tenant, &args, Vec::new());
        }
        if tenant.backend.is_sharded() {
            // Invalidations come from the node holding each key: one
            // connection of the client's own would hear of one node's keys.
            return self.error(&format!(
                "ERR CLIENT TRACKING is not supported on backend '{}': its keys live on several nodes",
                tenant.backend.name()
            ));
        }
        let current = self.tracking.as_ref().map(|t| &t.mode);
        let mode = match tracking_opts::apply(current, &parsed) {
            Ok(m) => m,
            Err(e) => return self.error(&e.0),
        };
        // Each PREFIX value is namespaced; BCAST alone gets the namespace itself.
        let mut keys: Vec<usize> = (4..args.len()).filter(|&i| args[i - 1].eq_ignore_ascii_case(b"prefix")).collect();
        if parsed.mode.bcast && keys.is_empty() {
            let had_narrower = current.is_some_and(|c| !c.prefixes.is_empty() && !c.prefixes.contains(&Bytes::new()));
            args.push(Bytes::from_static(b"PREFIX"));
            args.push(Bytes::new());
            keys.push(args.len() - 1);
            if had_narrower {
                // Redis adds "every key" beside the prefixes it has; the
                // backend would refuse the namespace as overlapping them,
                // so it starts again from the namespace alone (BCAST keeps
                // no per-key state to lose).
                self.pin(&tenant, tenant.backend.any_node());
                self.batcher.hidden(&mut self.replies, &tenant, proto, &[b"CLIENT", b"TRACKING", b"off"]);
            }
        }
        self.pin(&tenant, tenant.backend.any_node());
        if let (Some(w), Some(p)) = (&waiting, &self.pushes) {
            w.wait(p.tx.clone());
        }
        self.tracking = Some(Tracking { redirect, mode, waiting });
        self.state.client.tracking.store(true, std::sync::atomic::Ordering::Relaxed);
        self.forward_tracking(&tenant, &args, keys);
    }

    fn forward_tracking(&mut self, tenant: &Arc<TenantRt>, args: &[Bytes], keys: Vec<usize>) {
        let f = Forward {
            tenant,
            node: tenant.backend.any_node(),
            proto: self.state.proto,
            args,
            keys: &keys,
            reply: ReplyKeys::None,
            ttl: None,
            tally: None,
            freed: None,
            span: None,
            share: None,
            fill: None,
            mark: None,
        };
        self.batcher.forward(&mut self.replies, f);
    }

    /// CLIENT GETREDIR: the tenantry id redirected to (the backend knows another).
    pub(super) fn getredir(&mut self) -> bool {
        let Some(id) = self.tracking.as_ref().and_then(|t| t.redirect) else { return false };
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
            Some(frame) if frame.is_empty() => {
                self.redirect_ready();
                true
            }
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

impl Session {
    /// After HELLO (or RESET) changed the client's protocol: its own
    /// connection follows, or Redis would go on answering there in the old
    /// one and could not push invalidations to a client now on RESP3.
    pub(super) fn follow_protocol(&mut self, before: tenantry_protocol::Protocol) {
        let proto = self.state.proto;
        if proto == before || self.batcher.pinned.is_none() {
            return;
        }
        let Some(tenant) = self.state.tenant.clone() else { return };
        let version: &[u8] = if proto == tenantry_protocol::Protocol::Resp3 { b"3" } else { b"2" };
        self.batcher.hidden(&mut self.replies, &tenant, proto, &[b"HELLO", version]);
    }
}

impl Session {
    /// The connection invalidations are redirected to has subscribed: the
    /// backend redirects to it from now on, with the options in force.
    fn redirect_ready(&mut self) {
        let Some(t) = self.tracking.as_mut() else { return };
        let Some(waiting) = t.waiting.take() else { return };
        let backend_id = waiting.get();
        if backend_id == 0 {
            // Told of a subscriber connection since gone: wait for the next.
            if let Some(p) = &self.pushes {
                waiting.wait(p.tx.clone());
            }
            t.waiting = Some(waiting);
            return;
        }
        let Some(tenant) = self.state.tenant.clone() else { return };
        let mode = t.mode.clone();
        let id = backend_id.to_string();
        let mut args: Vec<Vec<u8>> = ["CLIENT", "TRACKING", "on", "REDIRECT"].map(|a| a.as_bytes().to_vec()).to_vec();
        args.push(id.into_bytes());
        let flags = [(mode.bcast, "BCAST"), (mode.optin, "OPTIN"), (mode.optout, "OPTOUT"), (mode.noloop, "NOLOOP")];
        args.extend(flags.iter().filter(|(on, _)| *on).map(|(_, name)| name.as_bytes().to_vec()));
        let proto = self.state.proto;
        if mode.bcast {
            // Prefixes cannot be given again while on (they would overlap
            // themselves): tracking starts again with all of them.
            for p in &mode.prefixes {
                args.push(b"PREFIX".to_vec());
                args.push(tenant.namespace.prefixed(p));
            }
            self.batcher.hidden(&mut self.replies, &tenant, proto, &[b"CLIENT", b"TRACKING", b"off"]);
        }
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        self.batcher.hidden(&mut self.replies, &tenant, proto, &refs);
    }
}
