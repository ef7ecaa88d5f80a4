//! From a whole request to the part of the session that answers it: the
//! connection's own commands, Pub/Sub, or the request path to the backend
//! (`forward.rs`). What the connection's modes allow is checked first
//! (`modes.rs`).

use super::connection::{self, After};
use super::modes::{self, Modes, Verdict};
use super::{Flow, Session, NOAUTH};
use crate::telemetry::ErrorKind;
use bytes::{Bytes, BytesMut};
use tenantry_protocol::classify::{classify, Action, ConnCommand};
use tenantry_protocol::command::{CommandSpec, KeyArgs, Profile, Special};
use tenantry_protocol::Request;
use tokio::time::Instant;

impl Session {
    /// Handles every complete request in `inbuf` while fewer than
    /// `max_pipeline` are in flight.
    pub(super) fn handle_buffered(&mut self, inbuf: &mut BytesMut) -> Flow {
        self.state.refresh();
        self.parser.set_limits(self.state.limits.protocol);
        if let Some(d) = self.delayed.take() {
            if Instant::now() < d.retry_at {
                let at = d.retry_at;
                self.delayed = Some(d);
                return Flow::Wait(at);
            }
            if self.handle_muted(d.req, Some(d.deadline), d.muted) == After::Close {
                return Flow::Close;
            }
            if let Some(d) = &self.delayed {
                return Flow::Wait(d.retry_at);
            }
        }
        // The limits hold for this pass: replies, which change the window,
        // are taken between passes.
        let limits = self.in_flight_limits();
        while self.has_room(limits) {
            match self.parser.parse(inbuf) {
                Ok(Some(req)) => {
                    self.incomplete = false;
                    let muted = self.reply_mode.next_muted();
                    if self.handle_muted(req, None, muted) == After::Close {
                        return Flow::Close;
                    }
                    if let Some(d) = &self.delayed {
                        return Flow::Wait(d.retry_at);
                    }
                    if self.waiting.is_some() {
                        // Later commands wait until the FLUSHDB or blocking command is done.
                        return Flow::Continue;
                    }
                }
                Ok(None) => {
                    self.incomplete = !inbuf.is_empty();
                    return Flow::Continue;
                }
                Err(e) => {
                    self.error(&e.to_string());
                    return Flow::Close;
                }
            }
        }
        Flow::Continue
    }

    /// `deadline`: set when retrying a request delayed by its quota or rate.
    pub(super) fn handle(&mut self, req: Request, deadline: Option<Instant>) -> After {
        let action = classify(&req, &mut self.keys);
        let modes = Modes { subscribed_resp2: self.subscribed_resp2(), in_tx: self.tx.is_some() };
        match modes::check(modes, &action, &req.args[0]) {
            Verdict::Go => {}
            Verdict::SubscribedPing => {
                self.subscribed_ping(&req);
                return After::Continue;
            }
            Verdict::Refuse { error, dooms: true } => {
                self.refuse(&error);
                return After::Continue;
            }
            Verdict::Refuse { error, dooms: false } => {
                self.error(&error);
                return After::Continue;
            }
        }
        match action {
            Action::Forward { spec, profile, match_all, blocking } => {
                self.forward_request(spec, profile, req, deadline, match_all, blocking)
            }
            Action::PubSub { spec, kind, subscribe } => match self.state.tenant.clone() {
                Some(tenant) => self.subscription(tenant, spec, kind, subscribe, &req),
                None => self.error(NOAUTH),
            },
            Action::Connection(cmd) => {
                // Counted once it ran, as Redis counts (INFO's figures leave
                // itself out), and not when put off to run again later.
                let spec = tenantry_protocol::command::resolve(&req.args);
                let nothing_put_off = self.delayed.is_none();
                let after = self.connection_command(cmd, req, deadline);
                if let (Some(tenant), Some(spec), false) =
                    (&self.state.tenant, spec, nothing_put_off && self.delayed.is_some())
                {
                    tenant.metrics.command(spec.name);
                }
                return after;
            }
            Action::Reject(why) => match &self.state.tenant {
                Some(t) => {
                    t.metrics.error(ErrorKind::of_rejection(&why), 1);
                    self.refuse(&why.to_string());
                }
                None => self.error(NOAUTH),
            },
        }
        After::Continue
    }

    fn forward_request(
        &mut self,
        spec: &'static CommandSpec,
        profile: &'static Profile,
        mut req: Request,
        deadline: Option<Instant>,
        match_all: bool,
        blocking: bool,
    ) {
        let Some(tenant) = self.state.tenant.clone() else { return self.error(NOAUTH) };
        if profile.script && self.refused_without_scripts(&tenant, false) {
            return;
        }
        if profile.special == Special::GetRedir && self.getredir() {
            return;
        }
        if profile.special == Special::ScriptBySha && self.script_by_sha(&tenant, &req) {
            return;
        }
        if let Special::ScriptBody(at) = profile.special {
            super::scripts::record_script(&tenant, &req, usize::from(at));
        }
        if profile.special == Special::Watch {
            let keys = self.keys.clone();
            if let Err(e) = self.before_watch(&tenant, &req.args, &keys) {
                // Redis answers it without dooming the transaction.
                return self.error(&e.resp());
            }
        }
        if match_all && deadline.is_none() {
            if profile.keys == KeyArgs::ScanMatch {
                req.args.push(Bytes::from_static(b"MATCH"));
            }
            req.args.push(Bytes::from_static(b"*"));
            self.keys.push(req.args.len() - 1);
        }
        self.forward(tenant, spec, profile, req, deadline, blocking)
    }

    /// A command of the connection's own: answered here, or by the part of
    /// the session that keeps its state.
    fn connection_command(&mut self, cmd: ConnCommand, req: Request, deadline: Option<Instant>) -> After {
        if self.state.tenant.is_none() && !cmd.allowed_before_auth() {
            self.error(NOAUTH);
            return After::Continue;
        }
        if cmd == ConnCommand::Reset {
            self.drop_pubsub();
            self.tracking = None;
            self.state.client.tracking.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        if cmd == ConnCommand::Wait && self.tx.is_none() {
            if let Some(tenant) = self.state.tenant.clone() {
                self.wait_replicas(&tenant, req);
            }
            return After::Continue;
        }
        if cmd == ConnCommand::ClientReply {
            self.client_reply(&req);
            return After::Continue;
        }
        if cmd == ConnCommand::ClientTracking {
            if let Some(tenant) = self.state.tenant.clone() {
                self.client_tracking(tenant, &req);
            }
            return After::Continue;
        }
        let req = match cmd {
            ConnCommand::Exec => match self.exec_through_migration(req, deadline) {
                Some(req) => req,
                None => return After::Continue,
            },
            _ => req,
        };
        let handled = self.transaction_command(cmd);
        self.write_mark = None;
        if let Some(handled) = handled {
            return handled;
        }
        if let Some(handled) = self.keyspace_command(cmd, &req) {
            return handled;
        }
        if let Some(handled) = self.config_command(cmd, &req) {
            return handled;
        }
        if let ConnCommand::Script(op) = cmd {
            if let Some(handled) = self.script_command(op, &req) {
                return handled;
            }
        }
        if let ConnCommand::Function(op) = cmd {
            if let Some(handled) = self.function_command(op, &req) {
                return handled;
            }
        }
        let state = &mut self.state;
        let proto = state.proto;
        let mut after = After::Continue;
        self.batcher.local(&mut self.replies, |out| after = connection::handle(state, cmd, &req, out));
        self.follow_protocol(proto);
        after
    }
}
