//! CONFIG GET and CONFIG SET. Client libraries and tools read server
//! settings (Sidekiq checks `maxmemory-policy`, test suites save and restore
//! encoding thresholds), so CONFIG GET is answered from the backend with
//! every secret left out. CONFIG SET would change the server for every
//! tenant: it is accepted only when each value is already the current one
//! (a no-op, as when a tool restores what it read), and refused otherwise.
//! `notify-keyspace-events` is the exception: each tenant has its own,
//! within the classes its config allows (the server publishes their union,
//! `server_events.rs`; a tenant never changes the server's setting).

use super::connection::After;
use super::Session;
use crate::error::Error;
use crate::tenant::TenantRt;
use bytes::Bytes;
use std::sync::Arc;
use tenantry_protocol::answer;
use tenantry_protocol::events::Flags;
use tenantry_protocol::{ConnCommand, Protocol, ReplyKeys, Request};
use tokio::sync::oneshot;

const NOTIFY: &[u8] = b"notify-keyspace-events";

/// Settings that hold passwords, or paths of the server's own files.
fn secret(name: &[u8]) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_slice(),
        b"requirepass"
            | b"masterauth"
            | b"masteruser"
            | b"aclfile"
            | b"dir"
            | b"dbfilename"
            | b"appendfilename"
            | b"appenddirname"
            | b"logfile"
            | b"pidfile"
            | b"unixsocket"
            | b"cluster-config-file"
    ) || name.starts_with(b"tls-")
}

fn bulk(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

/// The `(name, value)` pairs of a CONFIG GET reply (RESP2 array or RESP3 map).
fn pairs(reply: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let strings = answer::strings(reply).unwrap_or_default();
    strings.chunks(2).filter(|p| p.len() == 2).map(|p| (p[0].clone(), p[1].clone())).collect()
}

impl Session {
    pub(super) fn config_command(&mut self, cmd: ConnCommand, req: &Request) -> Option<After> {
        if !matches!(cmd, ConnCommand::ConfigGet | ConnCommand::ConfigSet) {
            return None;
        }
        let tenant = self.state.tenant.clone()?;
        if cmd == ConnCommand::ConfigGet && self.tx.is_some() {
            self.queue_answer(cmd, req);
            return Some(After::Continue);
        }
        let owner = tenant.clone();
        let answer = match cmd {
            ConnCommand::ConfigGet => self.config_get_answer(&tenant, &req.args),
            _ => {
                let node = tenant.backend.any_node().clone();
                let args = req.args.clone();
                Box::pin(async move {
                    config_set(&node, &args, &tenant)
                        .await
                        .unwrap_or_else(|e| Bytes::from(format!("-{}\r\n", e.context("CONFIG failed").resp())))
                })
            }
        };
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(Ok(answer.await));
        });
        self.batcher.deferred(&mut self.replies, &owner, rx, ReplyKeys::None);
        Some(After::Continue)
    }
}

impl Session {
    /// CONFIG GET's reply, read from the backend when awaited.
    pub(super) fn config_get_answer(&self, tenant: &Arc<TenantRt>, args: &[Bytes]) -> super::transaction::Answer {
        let node = tenant.backend.any_node().clone();
        let proto = self.state.proto;
        let args = args.to_vec();
        let tenant = tenant.clone();
        Box::pin(async move {
            config_get(&node, proto, &args, &tenant)
                .await
                .unwrap_or_else(|e| Bytes::from(format!("-{}\r\n", e.context("CONFIG failed").resp())))
        })
    }
}

async fn config_get(
    node: &crate::backend::NodePool,
    proto: Protocol,
    args: &[Bytes],
    tenant: &TenantRt,
) -> Result<Bytes, Error> {
    let refs: Vec<&[u8]> = args.iter().map(|a| a.as_ref()).collect();
    let reply = node.call_in(proto, &refs).await?;
    if reply.first() == Some(&b'-') {
        return Ok(reply);
    }
    // As set through any of the tenant's proxies.
    let events = tenant.read_event_flags().await;
    let kept: Vec<(Vec<u8>, Vec<u8>)> = pairs(&reply)
        .into_iter()
        .filter(|(name, _)| !secret(name))
        .map(|(name, value)| match name.eq_ignore_ascii_case(NOTIFY) {
            // The tenant's own, not the server's (which serves every tenant and tenantry).
            true => (name, events.to_config().into_bytes()),
            false => (name, value),
        })
        .collect();
    let mut out = match reply.first() {
        Some(b'%') => format!("%{}\r\n", kept.len()),
        _ => format!("*{}\r\n", kept.len() * 2),
    }
    .into_bytes();
    for (name, value) in kept {
        bulk(&mut out, &name);
        bulk(&mut out, &value);
    }
    Ok(Bytes::from(out))
}

async fn config_set(node: &crate::backend::NodePool, args: &[Bytes], tenant: &TenantRt) -> Result<Bytes, Error> {
    let settings = &args[2..];
    if !settings.len().is_multiple_of(2) {
        return Ok(Bytes::from_static(b"-ERR wrong number of arguments for 'config|set' command\r\n"));
    }
    let mut events = None;
    for pair in settings.chunks(2) {
        if pair[0].eq_ignore_ascii_case(NOTIFY) {
            match Flags::parse(&pair[1]) {
                Some(flags) => events = Some(flags),
                None => {
                    return Ok(Bytes::from(format!(
                        "-ERR CONFIG SET failed (possibly related to argument '{}') - Invalid event class character. \
                         Use 'Ag$lshzxeKEtmdn'.\r\n",
                        String::from_utf8_lossy(&pair[0])
                    )))
                }
            }
            continue;
        }
        let reply = node.call(&[b"CONFIG", b"GET", &pair[0]]).await?;
        let current = pairs(&reply);
        let same = !secret(&pair[0])
            && current.len() == 1
            && current[0].0.eq_ignore_ascii_case(&pair[0])
            && current[0].1 == pair[1].as_ref();
        if !same {
            return Ok(Bytes::from(format!(
                "-ERR command 'config|set' is not allowed through tenantry: it changes the server for every tenant \
                 ('{}' can only be set to its current value)\r\n",
                String::from_utf8_lossy(&pair[0])
            )));
        }
    }
    if let Some(flags) = events {
        // The backend already publishes every class the tenant may enable
        // (`server_events.rs`): the server's setting is not the tenant's to change.
        let allowed = tenant.config.keyspace_events;
        if !allowed.contains(flags) {
            return Ok(Bytes::from(format!(
                "-ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - tenant '{}' may \
                 enable only the keyspace event classes '{}' (tenants.{}.keyspace_events)\r\n",
                tenant.id,
                allowed.to_config(),
                tenant.id
            )));
        }
        tenant.write_event_flags(flags).await?;
    }
    Ok(Bytes::from_static(b"+OK\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_recognised() {
        assert!(secret(b"requirepass") && secret(b"MASTERAUTH") && secret(b"tls-key-file-pass") && secret(b"dir"));
        assert!(!secret(b"maxmemory-policy") && !secret(b"hash-max-listpack-entries"));
    }

    #[test]
    fn reads_config_pairs() {
        let r = b"*4\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n$11\r\nrequirepass\r\n$0\r\n\r\n";
        assert_eq!(pairs(r), vec![(b"maxmemory".to_vec(), b"0".to_vec()), (b"requirepass".to_vec(), vec![])]);
    }
}
