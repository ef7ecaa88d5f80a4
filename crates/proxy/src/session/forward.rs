//! A command for the tenant's backend, through the request path's steps in
//! the order they run: policy (ACL, sizes: `crate::policy`) → admit (quota,
//! rate: `admit.rs`) → rewrite (TTL policy here; the namespace is prefixed
//! as the command is encoded) → route (node or split: `sharded.rs`) →
//! batch (`batcher.rs`), or the transaction's queue (`transaction.rs`), or
//! a connection of its own for a blocking command (`blocking.rs`).

use super::batcher::{Forward, Queued};
use super::coalesce::NearRead;
use super::{sharded, Session};
use crate::backend::NodePool;
use crate::policy::{check_command, check_sizes};
use crate::tenant::TenantRt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tenantry_protocol::classify::timed_out_reply;
use tenantry_protocol::command::{flags, CommandSpec, Profile};
use tenantry_protocol::encode::Reply;
use tenantry_protocol::ttl::{self, TtlRewrite};
use tenantry_protocol::{hits, Request};
use tokio::time::Instant;

impl Session {
    /// `deadline`: set when retrying a request delayed by its quota or rate.
    pub(super) fn forward(
        &mut self,
        tenant: Arc<TenantRt>,
        spec: &'static CommandSpec,
        profile: &'static Profile,
        req: Request,
        deadline: Option<Instant>,
        blocking: bool,
    ) {
        self.forward_checked(tenant, spec, profile, req, deadline, blocking);
        // A write's mark went with its batch; one left (refused, put off) is
        // let go, or the cut-over barrier would wait for it.
        self.write_mark = None;
    }

    fn forward_checked(
        &mut self,
        tenant: Arc<TenantRt>,
        spec: &'static CommandSpec,
        profile: &'static Profile,
        req: Request,
        deadline: Option<Instant>,
        blocking: bool,
    ) {
        let metrics = &tenant.metrics;
        if deadline.is_none() {
            metrics.command_cached(spec.name, &mut self.command_cache);
            self.state.client.ran(spec);
        }
        if !spec.has_flag(flags::READONLY) {
            // Scripts and transactions too: anything not read-only may write.
            // Marked for every tenant: one that turns coalescing on by a
            // reload must know about writes sent before.
            self.own_writes.sent();
        }
        let checked = check_command(&tenant.id, &tenant.config.commands, spec)
            .and_then(|()| check_sizes(&tenant.id, &tenant.config.limits, spec, &req.args, &self.keys));
        if let Err(e) = checked {
            metrics.error(e.kind().into(), 1);
            return self.refuse(&e.resp());
        }
        let Some(req) = self.through_migration(&tenant, spec, blocking, req, deadline) else { return };
        let Some(req) = self.admit(&tenant, spec, req, deadline) else { return };
        let ttl = ttl_rewrite(&tenant, spec, &req.args, &self.keys);
        let bytes: usize = req.args.iter().map(|a| a.len()).sum();
        // Lent out (not copied) while `place` borrows the session.
        let keys = std::mem::take(&mut self.keys);
        let cmd = sharded::Command { spec, profile, args: &req.args, keys: &keys, ttl: ttl.as_ref() };
        let node = self.place(&tenant, cmd, blocking, bytes);
        self.keys = keys;
        let Some(node) = node else { return };
        if spec.has_flag(flags::DENYOOM) && tenant.config.memory.is_some() {
            // On the node it goes to: that node's next measuring pass counts it.
            tenant.quota.add_on(node.addr(), crate::tenant::write_cost(&req.args, &self.keys));
        }
        metrics.bytes_in.inc_by(bytes as u64);
        let reply = profile.reply;
        if blocking && self.tx.is_none() {
            // Blocking commands set no TTLs; the keys they create (BLMOVE's
            // destination) still get the default.
            let defaults = ttl.map(|rw| rw.default_for).unwrap_or_default();
            let timed_out = timed_out_reply(profile, self.state.proto);
            return self.blocking(&tenant, node, &req, reply, &defaults, timed_out);
        }
        if let Some(tx) = &mut self.tx {
            tx.queued.push(Queued { args: req.args, keys: self.keys.clone(), ttl, reply, answer: None });
            self.state.client.multi.store(tx.queued.len() as i64, std::sync::atomic::Ordering::Relaxed);
            let proto = self.state.proto;
            self.batcher.local(&mut self.replies, |out| Reply { out, proto }.simple("QUEUED"));
            return;
        }
        self.batch(&tenant, spec, profile, &req, node, ttl);
        // Its bytes are in the batch now: the list serves the next request.
        self.parser.recycle(req.args);
    }

    /// Into the open batch for its node, with what its reply is counted as.
    fn batch(
        &mut self,
        tenant: &Arc<TenantRt>,
        spec: &'static CommandSpec,
        profile: &'static Profile,
        req: &Request,
        node: Arc<NodePool>,
        ttl: Option<TtlRewrite>,
    ) {
        let metrics = &tenant.metrics;
        let mut tally = None;
        if let Some(&first) = self.keys.first() {
            let key = &req.args[first];
            metrics.touch(key);
            let t = hits::tally(profile, req.args.len());
            let big = self.state.big_value_bytes;
            let has_big = spec.has_flag(flags::DENYOOM)
                && req.args.iter().enumerate().skip(1).any(|(i, a)| a.len() > big && !self.keys.contains(&i));
            if t.is_some() || has_big {
                let counters = metrics.keyspace_cached(key, &mut self.keyspace_cache);
                if has_big {
                    counters.big_values.inc();
                }
                tally = t.map(|t| (t, counters));
            }
        }
        let span = crate::telemetry::tracing_setup::sample().then(|| {
            let keyspace =
                self.keys.first().map(|&k| String::from_utf8_lossy(crate::telemetry::keyspace_of(&req.args[k])).into_owned());
            tracing::info_span!(target: "tenantry::command", "command", tenant = %tenant.id, command = spec.name, keyspace)
        });
        let plain = ttl.as_ref().is_none_or(|rw| rw.is_empty());
        let fill = match self.near_cache_read(tenant, spec, profile, req, plain, tally.as_ref()) {
            NearRead::Answered => return,
            NearRead::Send(fill) => fill,
        };
        let freed = (tenant.config.memory.is_some() && profile.frees).then(|| tenant.quota.clone());
        let first = self.keys.first().copied().filter(|_| plain);
        let share = first.and_then(|first| self.share(tenant, profile, &req.args[first]));
        let f = Forward {
            tenant,
            node,
            proto: self.state.proto,
            args: &req.args,
            keys: &self.keys,
            reply: profile.reply,
            ttl,
            tally,
            freed,
            span,
            share,
            fill,
            mark: self.write_mark.take(),
        };
        self.batcher.forward(&mut self.replies, f);
    }
}

/// The tenant's TTL policy applied to the command's arguments, if it has one.
fn ttl_rewrite(tenant: &TenantRt, spec: &CommandSpec, args: &[bytes::Bytes], keys: &[usize]) -> Option<TtlRewrite> {
    let policy = &tenant.config.ttl;
    (!policy.is_noop()).then(|| {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        ttl::rewrite(spec, args, keys, |k| policy.rule_for(k), now_ms, fastrand::f64)
    })
}
