//! Whether a read may share the reply of an identical read in flight
//! (`coalesce`, see `backend::flights`) or be answered from the near-cache
//! (`near_cache`), and the client's own writes that decide which flights it
//! may join and when the near-cache may answer it.

use super::batcher::Share;
use super::transaction::Watch;
use super::Session;
use crate::near_cache::{Fill, Lookup};
use crate::telemetry::KeyspaceCounters;
use crate::tenant::TenantRt;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;
use tenantry_protocol::command::CommandSpec;
use tenantry_protocol::command::Profile;
use tenantry_protocol::hits::Tally;
use tenantry_protocol::ReplyKeys;
use tenantry_protocol::Request;

/// Never join: the client's write is still unanswered, so any flight in the
/// air may have been read before it. It may still lead: its read goes on
/// its own connection after its write.
const LEAD_ONLY: u64 = u64::MAX;

/// What a client wrote, for read-your-writes under coalescing.
#[derive(Debug, Default)]
pub(super) struct OwnWrites {
    /// A command that may write was sent and the client has not been
    /// answered everything since.
    unanswered: bool,
    /// Flights numbered up to this began before the client's last write
    /// was answered: it may not join them.
    floor: u64,
    /// When its last write was answered: the near-cache answers it once
    /// its trackers have heard everything up to then.
    answered_at: Option<Instant>,
}

impl OwnWrites {
    /// A command that may write is on its way.
    pub(super) fn sent(&mut self) {
        self.unanswered = true;
    }
}

/// What the near-cache did with a read.
pub(super) enum NearRead {
    /// It answered: the reply is queued.
    Answered,
    /// The read goes to the backend, filling the cache if `Some`.
    Send(Option<Fill>),
}

impl Session {
    /// A read's visit to the near-cache: answered from it (counted as a hit
    /// or miss of its keyspace as if Redis had answered), or sent on.
    /// `plain`: no TTL rewrite applies to it.
    pub(super) fn near_cache_read(
        &mut self,
        tenant: &Arc<TenantRt>,
        spec: &CommandSpec,
        profile: &Profile,
        req: &Request,
        plain: bool,
        tally: Option<&(Tally, Arc<KeyspaceCounters>)>,
    ) -> NearRead {
        let Some(&first) = self.keys.first().filter(|_| plain) else { return NearRead::Send(None) };
        let key = &req.args[first];
        let Some(looked) = self.near_read(tenant, spec, profile, &req.args, key) else { return NearRead::Send(None) };
        let metrics = &tenant.metrics;
        // The read's own keyspace counters, if it has them (fed to the sketch once).
        let counters = match tally {
            Some((_, c)) => c.clone(),
            None => metrics.keyspace_cached(key, &mut self.keyspace_cache),
        };
        let (hits, misses) = counters.near_cache(metrics.families());
        match looked {
            Lookup::Hit(reply) => {
                hits.inc();
                if let Some((t, counters)) = tally {
                    if let Some((h, m)) = tenantry_protocol::hits::count(*t, &reply) {
                        counters.hits.inc_by(h);
                        counters.misses.inc_by(m);
                    }
                }
                self.batcher.local(&mut self.replies, |out| out.extend_from_slice(&reply));
                NearRead::Answered
            }
            Lookup::Miss(fill) => {
                misses.inc();
                NearRead::Send(fill)
            }
        }
    }

    /// Once everything the client sent is answered, flights begun from then
    /// on may be joined: called as replies go out, so a flight begun just
    /// after is not refused for being older than the client's next read.
    pub(super) fn note_answered(&mut self) {
        if !self.own_writes.unanswered || !self.all_answered() {
            return;
        }
        let floor = match &self.state.tenant {
            Some(t) if t.flights.is_some() || t.near_cache.is_some() => t.flights.as_ref().map_or(0, |f| f.now()),
            _ => return,
        };
        self.own_writes = OwnWrites { unanswered: false, floor, answered_at: Some(Instant::now()) };
    }

    fn all_answered(&self) -> bool {
        self.replies.in_flight == 0 && self.batcher.pending() == 0
    }

    /// Whether the client's writes are all answered (noting it if they
    /// just were): until then its reads share nothing sent before them.
    fn own_writes_answered(&mut self) -> bool {
        if !self.own_writes.unanswered {
            return true;
        }
        if !self.all_answered() {
            return false;
        }
        self.note_answered();
        true
    }

    /// Whether a read of `profile` must run alone: one the table does not
    /// call shareable, or from a client in MULTI, WATCH or CLIENT TRACKING
    /// (their reads must run where and when they were sent).
    fn reads_alone(&self, profile: &Profile) -> bool {
        self.tx.is_some()
            || self.tracking.is_some()
            || self.watch != Watch::None
            || self.batcher.pinned.is_some()
            || !profile.shareable
    }

    /// The near-cache's answer to a read of `key`, if the tenant has one and
    /// the read is for it: the cached reply, or a fill for the reply to come.
    pub(super) fn near_read(
        &mut self,
        tenant: &Arc<TenantRt>,
        spec: &CommandSpec,
        profile: &Profile,
        args: &[Bytes],
        key: &Bytes,
    ) -> Option<Lookup> {
        let cache = tenant.near_cache.as_ref()?;
        if self.reads_alone(profile) || profile.reply != ReplyKeys::None || !cache.wants(key) {
            return None;
        }
        if !self.own_writes_answered() {
            return None;
        }
        Some(cache.lookup(key, self.state.proto, spec.id, &args[1..], self.own_writes.answered_at))
    }

    /// How the read `key` of `profile` may share a flight, if at all: a
    /// read that need not run alone, of a keyspace the tenant coalesces.
    pub(super) fn share<'t>(&mut self, tenant: &'t Arc<TenantRt>, profile: &Profile, key: &[u8]) -> Option<Share<'t>> {
        let flights = tenant.flights.as_ref()?;
        if self.reads_alone(profile) || !tenant.config.coalesce.covers(key) {
            return None;
        }
        let floor = if self.own_writes_answered() { self.own_writes.floor } else { LEAD_ONLY };
        Some(Share { flights, floor })
    }
}
