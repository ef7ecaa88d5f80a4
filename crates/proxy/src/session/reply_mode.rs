//! CLIENT REPLY ON|OFF|SKIP: a client may ask for no replies (fire and
//! forget), or none for its next command. Its commands run all the same;
//! their replies are read from the backend and counted, then not sent.
//!
//! A muted request's replies must not share a reply-queue entry with a
//! request that is answered: the batches around it are closed before and
//! after it, and its entry is marked in the queue (`ReplyQueue::muting`).

use super::connection::After;
use super::Session;
use tenantry_protocol::encode::Reply;
use tenantry_protocol::Request;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplyMode {
    On,
    Off,
    /// The next command's reply is not sent; then On again.
    SkipNext,
}

impl ReplyMode {
    /// Whether the reply of the command about to run is muted.
    pub(super) fn next_muted(&mut self) -> bool {
        match *self {
            ReplyMode::On => false,
            ReplyMode::Off => true,
            ReplyMode::SkipNext => {
                *self = ReplyMode::On;
                true
            }
        }
    }
}

impl Session {
    /// Handles a request whose reply is muted or not.
    pub(super) fn handle_muted(&mut self, req: Request, deadline: Option<Instant>, muted: bool) -> After {
        if !muted || self.answered_by_pushes(&req) {
            return self.handle(req, deadline);
        }
        self.batcher.flush(&mut self.replies);
        self.replies.muting = true;
        let after = self.handle(req, deadline);
        self.batcher.flush(&mut self.replies);
        self.replies.muting = false;
        after
    }

    /// (Un)subscriptions are confirmed as Pub/Sub messages are sent, not as
    /// replies: Redis sends them whatever CLIENT REPLY says (RESP2 and 3).
    fn answered_by_pushes(&self, req: &Request) -> bool {
        tenantry_protocol::command::resolve(&req.args).is_some_and(|spec| {
            matches!(
                tenantry_protocol::command::profile(spec).role,
                tenantry_protocol::command::Role::Subscription { .. }
            )
        })
    }

    /// `CLIENT REPLY ON|OFF|SKIP`: ON answers OK; OFF and SKIP answer
    /// nothing, as in Redis.
    pub(super) fn client_reply(&mut self, req: &Request) {
        let mode = match req.args.get(2).map(|a| a.to_ascii_lowercase()) {
            Some(a) if req.args.len() == 3 && a == b"on" => ReplyMode::On,
            Some(a) if req.args.len() == 3 && a == b"off" => ReplyMode::Off,
            Some(a) if req.args.len() == 3 && a == b"skip" => ReplyMode::SkipNext,
            _ => return self.error("ERR syntax error"),
        };
        if let Some(spec) = super::connection::spec_of(&req.args) {
            self.state.client.ran(spec);
        }
        self.reply_mode = mode;
        if mode == ReplyMode::On {
            // ON is answered even when it ends OFF.
            self.batcher.flush(&mut self.replies);
            self.replies.muting = false;
            let proto = self.state.proto;
            self.batcher.local(&mut self.replies, |out| Reply { out, proto }.simple("OK"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReplyMode;

    #[test]
    fn skip_mutes_one_command_and_off_every_one() {
        let mut m = ReplyMode::SkipNext;
        assert!(m.next_muted());
        assert!(!m.next_muted());
        let mut m = ReplyMode::Off;
        assert!(m.next_muted() && m.next_muted());
        assert!(!ReplyMode::On.next_muted());
    }
}
