//! Each proxy's part: it follows the phase kept on the old backend, says
//! it serves the tenant (a heartbeat the barrier counts), and at the
//! cut-over holds the tenant's new requests, waits until every write it sent
//! to the old backend is marked, and answers the barrier. Once the phase is
//! `cut` it serves the tenant from the new backend (the supervisor rebuilds
//! the runtime).

use crate::lease::Holder;
use crate::runtime::Runtime;
use crate::telemetry::{Families, MigrationPhaseLabels, TenantLabel};
use crate::tenant::migration::{Local, Migration, Phase};
use arc_swap::ArcSwap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tenantry_protocol::answer;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the phase is read: the most a proxy lags the fleet's phase
/// (so the most a proxy already holding waits for the last to hold).
pub(super) const POLL: Duration = Duration::from_millis(20);
/// ... while this proxy holds the tenant's requests: how soon it answers
/// the barrier and sees the cut.
const POLL_HOLDING: Duration = Duration::from_millis(2);
/// A heartbeat lasts this long (ms): a proxy that stops is no longer waited
/// for after it. The proxies' clocks must agree to well within it.
pub(super) const MEMBER_MS: u64 = 3000;

/// How much sooner than its heartbeat lapses a proxy stops using the old
/// backend: room for the proxies' clocks to differ.
const FENCE_MARGIN_MS: u64 = 1000;

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The fleet's view of one migration, as read from the state hash.
#[derive(Debug, Default)]
pub(super) struct State {
    /// `None`: no record, or one of another migration (another target).
    pub phase: Option<Phase>,
    pub switch: u64,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl State {
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find(|(k, _)| k == name.as_bytes()).map(|(_, v)| v.as_slice())
    }

    pub fn number(&self, name: &str) -> u64 {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()).unwrap_or(0)
    }
}

/// Reads the state hash; a record for another target counts as none.
pub(super) async fn read_state(job: &Migration) -> Result<State, crate::error::Error> {
    let node = job.keys.node(&job.source);
    let reply = node.call(&[b"HGETALL", &job.keys.state]).await?;
    let flat = answer::strings(&reply)?;
    let fields: Vec<(Vec<u8>, Vec<u8>)> = flat.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect();
    let mut state = State { fields, ..State::default() };
    let ours = state.get("to") == Some(job.spec.to.as_str().as_bytes())
        && state.get("namespace") == Some(job.to_ns.as_bytes());
    if ours {
        state.phase = state.get("phase").and_then(Phase::parse);
        state.switch = state.number("switch");
    }
    Ok(state)
}

/// What the follower is given: who it is and what it may touch.
pub(super) struct Context {
    pub me: Holder,
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub rebuild: Arc<Notify>,
    pub families: Arc<Families>,
    pub shutdown: CancellationToken,
}

pub(super) async fn run(job: Weak<Migration>, cx: Context) {
    let Context { me, runtime, rebuild, families, shutdown } = cx;
    let mut acked = 0;
    let mut failing = false;
    loop {
        let holding = job.upgrade().is_some_and(|j| j.local() == Local::Holding);
        tokio::select! {
            _ = tokio::time::sleep(if holding { POLL_HOLDING } else { POLL }) => {}
            _ = shutdown.cancelled() => return,
        }
        let Some(job) = job.upgrade() else { return };
        let stepped = step(&job, &me, &runtime, &rebuild, &mut acked).await;
        report(&job, &families);
        match stepped {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(tenant = %job.tenant, error = %e, "cannot read the migration's state on the old backend");
                }
                failing = true;
            }
        }
    }
}

async fn step(
    job: &Arc<Migration>,
    me: &Holder,
    runtime: &ArcSwap<Runtime>,
    rebuild: &Notify,
    acked: &mut u64,
) -> Result<(), crate::error::Error> {
    let node = job.keys.node(&job.source);
    if job.local() != Local::Cut {
        let sent = now_ms();
        let until = (sent + MEMBER_MS).to_string();
        node.call(&[b"ZADD", &job.keys.members(), until.as_bytes(), me.as_str().as_bytes()]).await?;
        // The barrier waits for this proxy until `until` by the driver's
        // clock: it stops sending to the old backend well before.
        job.sync.fenced_until.store(sent + MEMBER_MS - FENCE_MARGIN_MS, std::sync::atomic::Ordering::SeqCst);
    }
    let state = read_state(job).await?;
    let dirty = super::dirty::count(job).await?;
    job.update(|p| {
        p.keys_left = match state.phase {
            Some(Phase::Copy | Phase::Stopped) => state.number("total").saturating_sub(state.number("copied")) + dirty,
            Some(Phase::Verify | Phase::Switch) => dirty,
            _ => 0,
        };
        p.phase = state.phase.map(Phase::name);
        p.keys_copied = state.number("copied");
        p.bytes_copied = state.number("bytes");
        p.keys_recopied = state.number("recopied");
        p.verified = state.number("verified");
        p.mismatched = state.number("mismatched");
        p.error = state.get("error").map(|e| String::from_utf8_lossy(e).into_owned());
        p.stopped_key = state.get("stopped_key").map(|k| String::from_utf8_lossy(k).into_owned());
    });
    let local = job.local();
    match state.phase {
        None | Some(Phase::Copy | Phase::Verify | Phase::Stopped) if local != Local::Cut => {
            if local == Local::Holding {
                tracing::warn!(tenant = %job.tenant, "cut-over given up by the driver: serving from the old backend again");
            }
            if local != Local::Copying {
                job.set_local(Local::Copying);
            }
        }
        Some(Phase::Switch) if local != Local::Cut => {
            if local != Local::Holding {
                job.set_local(Local::Holding);
                tracing::info!(tenant = %job.tenant, switch = state.switch, "cut-over: holding the tenant's requests");
                give_up_blocked(job, runtime);
            }
            // Set before this read: no write can start after it (`begin_write`).
            if job.pending() == 0 && *acked != state.switch {
                let n = state.switch.to_string();
                node.call(&[b"SET", &job.keys.ack(me.as_str().as_bytes()), n.as_bytes(), b"PX", b"30000"]).await?;
                *acked = state.switch;
            }
        }
        Some(Phase::Cut | Phase::Done) if local != Local::Cut => {
            job.set_local(Local::Cut);
            tracing::info!(tenant = %job.tenant, to = %job.spec.to, namespace = %job.to_ns,
                "migration cut over: serving the tenant from its new backend");
            rebuild.notify_one();
            close_subscribers(job, runtime);
            let _ = node.call(&[b"ZREM", &job.keys.members(), me.as_str().as_bytes()]).await;
        }
        _ => {}
    }
    Ok(())
}

/// The progress on `/metrics`.
fn report(job: &Migration, families: &Families) {
    let p = job.progress();
    let tenant = TenantLabel { tenant: job.tenant.to_string() };
    for phase in Phase::ALL {
        let labels = MigrationPhaseLabels { tenant: tenant.tenant.clone(), phase: phase.name() };
        families.migration_phase.get_or_create(&labels).set(i64::from(p.phase == Some(phase.name())));
    }
    families.migration_keys.get_or_create(&tenant).set(p.keys_copied as i64);
    families.migration_bytes.get_or_create(&tenant).set(p.bytes_copied as i64);
    families.migration_recopied.get_or_create(&tenant).set(p.keys_recopied as i64);
    families.migration_left.get_or_create(&tenant).set(p.keys_left as i64);
}

/// A subscriber's channels, and a tracking client's invalidations, live on
/// the old backend, where nothing happens any more: its connection is closed
/// so that it subscribes (or tracks) again, through the new backend (clients
/// do so on reconnect).
fn close_subscribers(job: &Migration, runtime: &ArcSwap<Runtime>) {
    let rt = runtime.load();
    let Some(t) = rt.tenants.get(&job.tenant) else { return };
    for client in
        t.clients.all().into_iter().filter(|c| c.is_pubsub() || c.tracking.load(std::sync::atomic::Ordering::Relaxed))
    {
        client.kill.raise();
    }
}

/// A blocked command of the tenant would run on the old backend whenever it
/// is woken, after the cut-over: its connection is closed (as CLIENT KILL
/// would), which ends it on the backend; the client reconnects. Subscribers
/// follow at the cut (`supervise.rs`).
fn give_up_blocked(job: &Migration, runtime: &ArcSwap<Runtime>) {
    let rt = runtime.load();
    let Some(t) = rt.tenants.get(&job.tenant) else { return };
    for client in t.clients.all() {
        if client.blocked.load(std::sync::atomic::Ordering::Relaxed) {
            client.kill.raise();
        }
    }
}
