//! MULTI / EXEC / DISCARD. Commands between MULTI and EXEC are checked
//! (command table, tenant policy) and queued here, and answered +QUEUED; EXEC
//! sends MULTI, the commands and EXEC as one batch, which is written whole on
//! one shared backend connection, so no other client's command can land
//! inside the transaction. WATCH needs a connection of its own and is not
//! supported yet.

use super::batcher::Transaction;
use super::connection::After;
use super::Session;
use tenantry_protocol::encode::Reply;
use tenantry_protocol::ConnCommand;

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

impl Session {
    /// Handles transaction commands, and connection commands inside MULTI;
    /// `None` for a connection command to handle as usual.
    pub(super) fn transaction_command(&mut self, cmd: ConnCommand) -> Option<After> {
        let proto = self.state.proto;
        let in_tx = self.tx.is_some();
        match cmd {
            ConnCommand::Multi if in_tx => self.error("ERR MULTI calls can not be nested"),
            ConnCommand::Multi => {
                let tenant = self.state.tenant.clone()?;
                self.tx = Some(Transaction { tenant, proto, queued: Vec::new(), dirty: false });
                self.batcher.local(&mut self.replies, |out| Reply { out, proto }.simple("OK"));
            }
            ConnCommand::Exec => match self.tx.take() {
                None => self.error("ERR EXEC without MULTI"),
                Some(tx) if tx.dirty => self.error(EXECABORT),
                Some(tx) => self.batcher.transaction(&mut self.replies, tx),
            },
            ConnCommand::Discard => match self.tx.take() {
                None => self.error("ERR DISCARD without MULTI"),
                Some(_) => self.batcher.local(&mut self.replies, |out| Reply { out, proto }.simple("OK")),
            },
            // Nothing is ever watched: UNWATCH has nothing to undo.
            ConnCommand::Unwatch => self.batcher.local(&mut self.replies, |out| Reply { out, proto }.simple("OK")),
            ConnCommand::Quit | ConnCommand::Reset => {
                self.tx = None;
                return None;
            }
            _ if in_tx => self.refuse("ERR Command not allowed inside a transaction"),
            _ => return None,
        }
        Some(After::Continue)
    }
}
