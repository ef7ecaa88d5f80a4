//! INFO for an authenticated client: the tenant's figures are taken as the
//! command arrives, each backend node's own `INFO everything` is fetched on
//! a connection of tenantry's, and `crate::info` writes the tenant's view of
//! it. Its reply keeps its place among the client's others.
//!
//! INFO stays cheap for health checks: the keyspace line comes from the
//! measuring pass's counts; only `INFO keyspace`, naming the section, walks
//! the tenant's keys for exact figures (and sees the client's writes
//! pipelined before it).

use super::connection::After;
use super::state::State;
use super::Session;
use crate::backend::NodePool;
use crate::error::Error;
use crate::info::{render, TenantInfo, Wanted};
use crate::tenant::TenantRt;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tenantry_protocol::{answer, ConnCommand, Namespace, Request};
use tokio::sync::oneshot;

impl Session {
    /// `None` when there is no tenant (INFO is then answered locally).
    pub(super) fn info(&mut self, req: &Request) -> Option<After> {
        let tenant = self.state.tenant.clone()?;
        if self.tx.is_some() {
            // Answered in EXEC's reply, once the transaction has run.
            self.queue_answer(ConnCommand::Info, req);
            return Some(After::Continue);
        }
        // The walk reads the keyspace on other connections than the
        // client's batches: its earlier writes must have landed.
        if Wanted::parse(&req.args[1..]).names("keyspace") && self.after_earlier_replies(req) {
            return Some(After::Continue);
        }
        let answer = self.info_answer(&tenant, &req.args);
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(Ok(answer.await));
        });
        self.batcher.deferred(&mut self.replies, &tenant, rx, tenantry_protocol::ReplyKeys::None);
        Some(After::Continue)
    }
}

impl Session {
    /// INFO's reply: the tenant's figures are taken now, the nodes' own
    /// when the answer is awaited.
    pub(super) fn info_answer(&self, tenant: &Arc<TenantRt>, args: &[Bytes]) -> super::transaction::Answer {
        let wanted = Wanted::parse(&args[1..]);
        let exact_keyspace = wanted.names("keyspace");
        let mut figures = tenant_info(&self.state, tenant);
        let nodes = tenant.backend.nodes();
        let ns = tenant.namespace.clone();
        let batch = self.state.runtime.load().config.cleanup.batch;
        let proto = self.state.proto;
        Box::pin(async move {
            let result = async {
                if exact_keyspace {
                    figures.keyspace = Some(walk_keyspace(&nodes, &ns, batch).await?);
                }
                let mut texts = Vec::with_capacity(nodes.len());
                for node in &nodes {
                    texts.push(node_info(node).await?);
                }
                Ok::<_, Error>(render(&texts, &wanted, &figures))
            };
            match result.await {
                Ok(text) => {
                    let mut out = bytes::BytesMut::new();
                    tenantry_protocol::encode::Reply { out: &mut out, proto }.text(&text);
                    out.freeze()
                }
                Err(e) => Bytes::from(format!("-{}\r\n", e.context("INFO failed").resp())),
            }
        })
    }
}

/// The tenant's figures as this proxy keeps them (memory as every proxy
/// of the tenant shares it).
fn tenant_info(state: &State, tenant: &TenantRt) -> TenantInfo {
    let clients = tenant.clients.all();
    let count = |flag: fn(&crate::clients::ClientHandle) -> bool| clients.iter().filter(|c| flag(c)).count() as u64;
    let metrics = &tenant.metrics;
    let commands = metrics.command_counts();
    let total: u64 = commands.iter().map(|(_, n)| n).sum();
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (kind, n) in metrics.error_counts() {
        if let Some(code) = kind.reply_code() {
            *errors.entry(code).or_default() += n;
        }
    }
    let totals = metrics.totals();
    TenantInfo {
        tenant: tenant.id.to_string(),
        namespace: tenant.namespace.to_string(),
        backend: tenant.config.backend.to_string(),
        tcp_port: state.client.laddr.map(|a| a.port()),
        connected_clients: metrics.connections.get().max(0) as u64,
        max_clients: tenant.config.limits.max_connections.unwrap_or(state.limits.max_clients) as u64,
        blocked_clients: count(|c| c.blocked.load(Ordering::Relaxed)),
        tracking_clients: count(|c| c.tracking.load(Ordering::Relaxed)),
        used_memory: tenant.quota.used(),
        quota: tenant.config.memory.map(|q| (q.bytes, q.eviction.name())),
        ops_per_sec: metrics.ops_per_sec(total),
        commands,
        errors: errors.into_iter().collect(),
        net_input: metrics.bytes_in.get(),
        net_output: metrics.bytes_out.get(),
        hits: totals.hits,
        misses: totals.misses,
        evicted: totals.evictions + totals.quota_evictions,
        expired: totals.expirations,
        patterns: tenant.patterns.count() as u64,
        keyspace: tenant.quota.keyspace(),
    }
}

/// The node's own `INFO everything`.
async fn node_info(node: &NodePool) -> Result<String, Error> {
    let reply = node.call(&[b"INFO", b"everything"]).await?;
    let text = answer::text(&reply)?.unwrap_or_default();
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// keys, keys with a TTL and their mean TTL in ms, counted key by key.
async fn walk_keyspace(nodes: &[Arc<NodePool>], ns: &Namespace, batch: u32) -> Result<(u64, u64, u64), Error> {
    let (mut keys, mut expires, mut ttl_sum) = (0, 0, 0);
    for node in nodes {
        let (k, e, avg) = crate::cleanup::keyspace_stats(node, ns, batch).await?;
        keys += k;
        expires += e;
        ttl_sum += avg * e;
    }
    Ok((keys, expires, ttl_sum.checked_div(expires).unwrap_or(0)))
}
