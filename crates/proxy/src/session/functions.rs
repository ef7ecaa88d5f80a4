//! Redis functions (FUNCTION LOAD/LIST/DELETE/FLUSH; FCALL is forwarded with
//! its keys prefixed). Libraries and functions have server-wide names that
//! cannot carry a namespace (Redis allows only letters, digits and `_`), so
//! tenantry records which tenant loaded each library, in the hash
//! `tenantry:functions` on the backend (library name -> namespace), and lets
//! a tenant list, replace, delete and flush only its own. Like EVAL, this is
//! for tenants with `scripts: true` only: a function can reach any key, and
//! any such tenant can FCALL any function by name.

use super::connection::After;
use super::Session;
use crate::backend::NodePool;
use crate::error::Error;
use bytes::Bytes;
use std::sync::Arc;
use tenantry_protocol::answer;
use tenantry_protocol::command::FunctionOp;
use tenantry_protocol::{glob, Protocol, ReplyKeys, Request};
use tokio::sync::oneshot;

const OWNERS: &[u8] = b"tenantry:functions";

impl Session {
    pub(super) fn function_command(&mut self, op: FunctionOp, req: &Request) -> Option<After> {
        let tenant = self.state.tenant.clone()?;
        if self.refused_without_scripts(&tenant, true) {
            return Some(After::Continue);
        }
        if self.after_earlier_replies(req) {
            return Some(After::Continue);
        }
        let call = Call {
            node: tenant.backend.any_node(),
            // On a cluster or ring, every node runs FCALLs, so every node
            // gets the libraries; the owners' hash is where its key lives.
            everywhere: tenant.backend.nodes(),
            owners: tenant.shared.node_of_own_key(OWNERS),
            proto: self.state.proto,
            owner: Bytes::copy_from_slice(tenant.namespace.as_bytes()),
            args: req.args.to_vec(),
        };
        let (tx, rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        // Later commands (an FCALL pipelined after FUNCTION LOAD) wait for it.
        self.waiting = Some(super::Waiting::on(done_rx));
        tokio::spawn(async move {
            let reply = match op {
                FunctionOp::Load => call.load().await,
                FunctionOp::Delete => call.delete().await,
                FunctionOp::Flush => call.flush().await,
                FunctionOp::List => call.list().await,
                FunctionOp::Dump => call.dump().await,
                FunctionOp::Restore => call.restore().await,
            };
            let reply = reply.unwrap_or_else(|e| error(&e.context("FUNCTION failed").resp()));
            let _ = tx.send(Ok(reply));
            let _ = done_tx.send(());
        });
        self.batcher.deferred(&mut self.replies, &tenant, rx, ReplyKeys::None);
        Some(After::Continue)
    }
}

#[derive(Clone)]
pub(super) struct Call {
    /// Where libraries are listed from.
    pub(super) node: Arc<NodePool>,
    /// Where they are loaded and deleted.
    pub(super) everywhere: Vec<Arc<NodePool>>,
    /// Where `tenantry:functions` lives.
    pub(super) owners: Arc<NodePool>,
    pub(super) proto: Protocol,
    /// The tenant's namespace: who owns a library.
    pub(super) owner: Bytes,
    pub(super) args: Vec<Bytes>,
}

/// The `name=` of a library's `#!engine name=lib ...` first line.
pub(super) fn library_name(code: &[u8]) -> Option<&[u8]> {
    let first = code.split(|&b| b == b'\n').next()?.strip_prefix(b"#!")?;
    first.split(|&b| b == b' ').find_map(|part| part.strip_prefix(b"name="))
}

pub(super) fn error(msg: &str) -> Bytes {
    Bytes::from(format!("-{msg}\r\n"))
}

impl Call {
    async fn forward(&self) -> Result<Bytes, Error> {
        let args: Vec<&[u8]> = self.args.iter().map(|a| a.as_ref()).collect();
        Ok(self.node.call_in(self.proto, &args).await?)
    }

    /// The command on every node: the first node's reply, or the first error.
    async fn forward_everywhere(&self) -> Result<Bytes, Error> {
        let args: Vec<&[u8]> = self.args.iter().map(|a| a.as_ref()).collect();
        let mut first = None;
        for node in &self.everywhere {
            let reply = node.call_in(self.proto, &args).await?;
            if reply.first() == Some(&b'-') {
                return Ok(reply);
            }
            first.get_or_insert(reply);
        }
        Ok(first.unwrap_or_default())
    }

    pub(super) async fn owner_of(&self, lib: &[u8]) -> Result<Option<Bytes>, Error> {
        let reply = self.owners.call(&[b"HGET", OWNERS, lib]).await?;
        Ok(answer::text(&reply)?.map(Bytes::from))
    }

    /// The tenant's libraries.
    pub(super) async fn owned(&self) -> Result<Vec<Bytes>, Error> {
        let reply = self.owners.call(&[b"HGETALL", OWNERS]).await?;
        let fields = answer::strings(&reply)?;
        Ok(fields
            .chunks(2)
            .filter(|pair| pair.len() == 2 && pair[1] == self.owner.as_ref())
            .map(|pair| Bytes::from(pair[0].clone()))
            .collect())
    }

    /// FUNCTION LOAD [REPLACE] code: a name another tenant owns is taken.
    pub(super) async fn load(&self) -> Result<Bytes, Error> {
        let code = self.args.last().cloned().unwrap_or_default();
        let Some(lib) = library_name(&code) else { return self.forward().await };
        let taken = || error(&format!("ERR Library '{}' already exists", String::from_utf8_lossy(lib)));
        let mut claimed = false;
        match self.owner_of(lib).await? {
            Some(o) if o != self.owner => return Ok(taken()),
            Some(_) => {}
            None => {
                let r = self.owners.call(&[b"HSETNX", OWNERS, lib, &self.owner]).await?;
                claimed = answer::integer(&r)? == 1;
                if !claimed && self.owner_of(lib).await?.is_some_and(|o| o != self.owner) {
                    return Ok(taken());
                }
            }
        }
        let reply = self.forward_everywhere().await?;
        if claimed && reply.first() == Some(&b'-') {
            self.owners.call(&[b"HDEL", OWNERS, lib]).await?;
        }
        Ok(reply)
    }

    /// FUNCTION DELETE lib: only the tenant's own.
    async fn delete(&self) -> Result<Bytes, Error> {
        let lib = self.args[2].clone();
        if self.owner_of(&lib).await?.as_ref() != Some(&self.owner) {
            return Ok(error("ERR Library not found"));
        }
        let reply = self.forward_everywhere().await?;
        if reply.first() == Some(&b'+') {
            self.owners.call(&[b"HDEL", OWNERS, &lib]).await?;
        }
        Ok(reply)
    }

    /// FUNCTION FLUSH [ASYNC|SYNC]: the tenant's libraries, not everyone's.
    pub(super) async fn flush(&self) -> Result<Bytes, Error> {
        let ok = self.args.len() == 2
            || (self.args.len() == 3
                && (self.args[2].eq_ignore_ascii_case(b"ASYNC") || self.args[2].eq_ignore_ascii_case(b"SYNC")));
        if !ok {
            return Ok(error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option"));
        }
        for lib in self.owned().await? {
            for node in &self.everywhere {
                node.call(&[b"FUNCTION", b"DELETE", &lib]).await?;
            }
            self.owners.call(&[b"HDEL", OWNERS, &lib]).await?;
        }
        Ok(Bytes::from_static(b"+OK\r\n"))
    }

    /// FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE]: the tenant's libraries.
    async fn list(&self) -> Result<Bytes, Error> {
        // Redis checks the arguments (its own errors); the answer is ours.
        let check = self.forward().await?;
        if check.first() == Some(&b'-') {
            return Ok(check);
        }
        let mut pattern: Option<Bytes> = None;
        let mut withcode = false;
        let mut i = 2;
        while i < self.args.len() {
            if self.args[i].eq_ignore_ascii_case(b"WITHCODE") {
                withcode = true;
                i += 1;
            } else {
                pattern = self.args.get(i + 1).cloned();
                i += 2;
            }
        }
        let mut libs = self.owned().await?;
        libs.retain(|lib| pattern.as_ref().is_none_or(|p| glob::matches(p, lib)));
        libs.sort();
        let mut body = Vec::new();
        let mut n = 0;
        for lib in libs {
            let mut args: Vec<&[u8]> = vec![b"FUNCTION", b"LIST", b"LIBRARYNAME", &lib];
            if withcode {
                args.push(b"WITHCODE");
            }
            let one = self.node.call_in(self.proto, &args).await?;
            // `*1\r\n<library>`, or `*0\r\n` if it went meanwhile. Library names
            // hold no glob characters, so the pattern matches only itself.
            if let Some(rest) = one.strip_prefix(b"*1\r\n") {
                body.extend_from_slice(rest);
                n += 1;
            }
        }
        let mut out = format!("*{n}\r\n").into_bytes();
        out.extend_from_slice(&body);
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::library_name;

    #[test]
    fn reads_the_library_name() {
        assert_eq!(library_name(b"#!lua name=mylib\nredis.register_function(...)"), Some(&b"mylib"[..]));
        assert_eq!(library_name(b"#!lua engine=x name=lib_2 \n"), Some(&b"lib_2"[..]));
        assert_eq!(library_name(b"return 1"), None);
    }
}
