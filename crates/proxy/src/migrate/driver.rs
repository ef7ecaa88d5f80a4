//! The proxy holding the migration's lease moves the keys: backfill (SCAN
//! of the old namespace at `keys_per_sec`, each page copied, then the dirty
//! keys copied again), verify (a sample compared on both sides), the
//! cut-over barrier, the last dirty keys, `cut`, and the old copies'
//! deletion. Each step's progress is in the state hash, so whichever proxy
//! holds the lease next (after a restart) goes on from there.

use super::copy::{self, Copied};
use super::follower::{read_state, State};
use crate::cleanup::{delete_namespace, NamespaceScan};
use crate::error::{Error, Kind};
use crate::lease::{self, Holder};
use crate::tenant::migration::{Migration, Phase};
use bytes::Bytes;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tenantry_protocol::answer;
use tokio_util::sync::CancellationToken;

/// Keys per SCAN page and per copy batch.
const PAGE: u32 = 200;
/// Dirty keys taken per SPOP.
const DIRTY_BATCH: u64 = 500;
/// Dirty keys left for the copy made while writes are held, at most (if
/// copies outrun writes within `CATCH_UP_PASSES` passes).
const CATCH_UP_LEFT: u64 = 64;
const CATCH_UP_PASSES: usize = 20;
/// How often a stopped migration tries its key again.
const STOPPED_RETRY: Duration = Duration::from_secs(5);
/// How long the barrier waits for every proxy before giving the cut-over up.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(10);
/// A value's TTL on the two sides may differ by this much.
const TTL_TOLERANCE_MS: i64 = 1000;
/// Renew the lease at least this often while working.
const RENEW: Duration = Duration::from_secs(2);

/// `stop`: the config no longer asks for the migration.
pub(super) async fn run(job: Weak<Migration>, me: Holder, shutdown: CancellationToken, stop: CancellationToken) {
    let mut pause = Duration::from_millis(100);
    let mut failures: u32 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return,
            _ = stop.cancelled() => return,
        }
        pause = Duration::from_secs(1);
        let Some(j) = job.upgrade() else { return };
        let (node, lease_key) = (j.keys.node(&j.source), j.keys.lease.clone());
        if !lease::hold(&node, &lease_key, &me).await {
            continue;
        }
        drop(j);
        let mut driver = Driver {
            job: job.clone(),
            me: me.clone(),
            renewed: Instant::now(),
            progressed: false,
            progressed_steps: 0,
        };
        let outcome = tokio::select! {
            r = driver.drive() => r,
            _ = shutdown.cancelled() => Err(Error::new(Kind::Shutdown, "stopped by shutdown")),
            _ = stop.cancelled() => Err(Error::new(Kind::Shutdown, "the migration was removed from the config")),
        };
        match outcome {
            Ok(()) => {}
            // Stopped or no longer asked for: another proxy (or the end of
            // the migration, `supervise.rs`) takes the lease at once.
            Err(e) if e.kind() == Kind::Shutdown => {}
            Err(e) => {
                let Some(j) = job.upgrade() else { return };
                // Backoff: 1, 2, 4, 8 s between tries while it keeps failing.
                failures = if driver.progressed_steps > 0 { 1 } else { failures + 1 };
                pause = Duration::from_secs(1 << (failures - 1).min(3));
                tracing::warn!(tenant = %j.tenant, error = %e, retry_in = ?pause, "migration step failed; retrying");
                let _ = set(&j, &[(b"error", e.to_string().as_bytes())]).await;
                continue;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), lease::release(&node, &lease_key, &me)).await;
        return;
    }
}

struct Driver {
    job: Weak<Migration>,
    me: Holder,
    renewed: Instant,
    /// A step succeeded since the lease was taken: an earlier error is over.
    progressed: bool,
    /// Pages and phases done since the lease was taken.
    progressed_steps: u64,
}

/// Sets fields of the state hash.
async fn set(job: &Migration, fields: &[(&[u8], &[u8])]) -> Result<(), Error> {
    let mut args: Vec<&[u8]> = vec![b"HSET", &job.keys.state];
    for (k, v) in fields {
        args.push(k);
        args.push(v);
    }
    let node = job.keys.node(&job.source);
    answer::integer(&node.call(&args).await?)?;
    Ok(())
}

async fn add(job: &Migration, field: &str, n: u64) -> Result<(), Error> {
    let node = job.keys.node(&job.source);
    let n = n.to_string();
    answer::integer(&node.call(&[b"HINCRBY", &job.keys.state, field.as_bytes(), n.as_bytes()]).await?)?;
    Ok(())
}

impl Driver {
    /// The migration, while the config still asks for it.
    fn job(&self) -> Result<Arc<Migration>, Error> {
        self.job.upgrade().ok_or_else(|| Error::new(Kind::Shutdown, "the migration was removed from the config"))
    }

    /// Renews the lease when due; an error if another proxy took it.
    async fn renew(&mut self) -> Result<Arc<Migration>, Error> {
        let job = self.job()?;
        if self.renewed.elapsed() >= RENEW {
            if !lease::hold(&job.keys.node(&job.source), &job.keys.lease, &self.me).await {
                return Err(Error::new(Kind::Backend, "lost the migration's lease"));
            }
            self.renewed = Instant::now();
        }
        Ok(job)
    }

    async fn drive(&mut self) -> Result<(), Error> {
        loop {
            let job = self.renew().await?;
            let state = read_state(&job).await?;
            // An earlier step's error is over once one succeeded (a stopped
            // move keeps its reason until it goes on).
            if state.get("error").is_some() && self.progressed && state.phase != Some(Phase::Stopped) {
                answer::integer(&job.keys.node(&job.source).call(&[b"HDEL", &job.keys.state, b"error"]).await?)?;
            }
            self.progressed = true;
            if self.target_lost(&job, &state).await? {
                continue;
            }
            let stepped = match state.phase {
                None => self.begin(&job, &state).await,
                Some(Phase::Copy) => {
                    drop(job);
                    match self.backfill(&state).await {
                        Ok(()) => set(&*self.job()?, &[(b"phase", b"verify")]).await,
                        Err(e) => Err(e),
                    }
                }
                Some(Phase::Verify) => {
                    drop(job);
                    let verified = async {
                        self.verify().await?;
                        // Before the proxies hold the tenant's writes (they do
                        // from the phase `switch` on).
                        self.catch_up(&*self.job()?).await?;
                        set(&*self.job()?, &[(b"phase", b"switch")]).await
                    };
                    verified.await
                }
                Some(Phase::Switch) => {
                    drop(job);
                    let switched = self.switch().await;
                    if switched.is_err() {
                        // The proxies hold the tenant's writes while the
                        // phase is `switch`: never while this is retried.
                        let _ = set(&*self.job()?, &[(b"phase", b"verify")]).await;
                    }
                    switched
                }
                Some(Phase::Stopped) => {
                    drop(job);
                    self.stopped(&state).await
                }
                Some(Phase::Cut) => {
                    drop(job);
                    self.delete_old().await
                }
                Some(Phase::Done) => return Ok(()),
            };
            match stepped {
                Err(e) if e.kind() == Kind::Limit => {
                    let resume = match state.phase {
                        Some(Phase::Copy) => Phase::Copy,
                        _ => Phase::Verify,
                    };
                    self.stop(resume, &e).await?;
                }
                other => {
                    other?;
                    self.progressed_steps += 1;
                }
            }
        }
    }

    /// Whether the target lost what was copied (a node restarted empty):
    /// then the copy starts again from the beginning.
    async fn target_lost(&self, job: &Migration, state: &State) -> Result<bool, Error> {
        let copying = matches!(state.phase, Some(Phase::Copy | Phase::Verify | Phase::Switch | Phase::Stopped));
        let Some(started) = state.get("started_ms").filter(|_| copying) else { return Ok(false) };
        if super::target::intact(job, started).await? {
            return Ok(false);
        }
        tracing::warn!(tenant = %job.tenant, to = %job.spec.to,
            "the target lost the keys copied to it (a node restarted empty?): copying again from the start");
        let node = job.keys.node(&job.source);
        let mut args: Vec<&[u8]> = vec![b"HDEL", &job.keys.state, b"stopped_key", b"resume"];
        args.extend(state.fields.iter().map(|(k, _)| k.as_slice()).filter(|k| k.starts_with(b"cursor:")));
        answer::integer(&node.call(&args).await?)?;
        set(job, &[(b"phase", b"copy"), (b"copied", b"0"), (b"bytes", b"0"), (b"recopied", b"0")]).await?;
        super::target::plant(job, started).await?;
        Ok(true)
    }

    /// A key the target cannot take: the phase is `stopped`, naming it, and
    /// the tenant is served as during the copy (its writes marked).
    async fn stop(&self, resume: Phase, e: &Error) -> Result<(), Error> {
        let job = self.job()?;
        let key = job.too_big.lock().expect("not poisoned").take().unwrap_or_default();
        tracing::error!(tenant = %job.tenant, key = %String::from_utf8_lossy(&key), error = %e, "migration stopped");
        let why = e.to_string();
        set(
            &job,
            &[
                (b"phase", b"stopped"),
                (b"resume", resume.name().as_bytes()),
                (b"stopped_key", &key),
                (b"error", why.as_bytes()),
            ],
        )
        .await
    }

    /// Stopped: every few seconds the key is tried again; once the target
    /// takes it, the move goes on where it stopped.
    async fn stopped(&mut self, state: &State) -> Result<(), Error> {
        let key = Bytes::copy_from_slice(state.get("stopped_key").unwrap_or_default());
        let resume = state.get("resume").and_then(Phase::parse).unwrap_or(Phase::Copy);
        let deadline = Instant::now() + STOPPED_RETRY;
        while Instant::now() < deadline {
            self.renew().await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let job = self.renew().await?;
        match copy::copy_keys(&job, std::slice::from_ref(&key)).await {
            Ok(_) => {
                tracing::info!(tenant = %job.tenant, key = %String::from_utf8_lossy(&key), "migration goes on");
                let node = job.keys.node(&job.source);
                answer::integer(&node.call(&[b"HDEL", &job.keys.state, b"stopped_key", b"resume", b"error"]).await?)?;
                set(&job, &[(b"phase", resume.name().as_bytes())]).await
            }
            Err(e) if e.kind() == Kind::Limit => {
                job.too_big.lock().expect("not poisoned").take();
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// A new record, once the target answers.
    async fn begin(&mut self, job: &Migration, old: &State) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !job.target.is_up() {
            if Instant::now() > deadline {
                let why = format!(
                    "target backend '{}' is unreachable: not starting the migration; tenant '{}' stays on '{}'",
                    job.spec.to, job.tenant, job.from
                );
                tracing::error!(tenant = %job.tenant, "{why}");
                job.update(|p| p.error = Some(why.clone()));
                return Err(Error::new(Kind::Backend, why));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !old.fields.is_empty() {
            tracing::warn!(tenant = %job.tenant, "replacing the record of an earlier migration to another target");
        }
        let node = job.keys.node(&job.source);
        answer::integer(&node.call(&[b"DEL", &job.keys.state]).await?)?;
        super::dirty::clear(&job.source, &job.keys).await?;
        // For the keys left to copy, as `/tenants` and the metrics show them.
        let mut total = 0;
        for n in job.source.nodes() {
            total += crate::cleanup::count_namespace(&n, &job.from_ns, 1000).await?;
        }
        let started =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()).to_string();
        set(
            job,
            &[
                (b"to", job.spec.to.as_str().as_bytes()),
                (b"namespace", job.to_ns.as_bytes()),
                (b"phase", b"copy"),
                (b"started_ms", started.as_bytes()),
                (b"total", total.to_string().as_bytes()),
            ],
        )
        .await?;
        super::target::plant(job, started.as_bytes()).await?;
        tracing::info!(tenant = %job.tenant, from = %job.from, to = %job.spec.to, namespace = %job.to_ns,
            "migration started: copying");
        Ok(())
    }

    /// Copies every key of the old namespace, node by node, from the cursor
    /// each node's scan had reached. Keys written meanwhile are copied again
    /// after it (`verify`, `catch_up`), not page by page: a hot key would be
    /// copied again with every page, and a big one costs its whole size.
    async fn backfill(&mut self, state: &State) -> Result<(), Error> {
        let nodes = self.job()?.source.nodes();
        for (i, node) in nodes.iter().enumerate() {
            let field = format!("cursor:{i}");
            let start = state.get(&field).unwrap_or(b"0");
            if start == b"done" {
                continue;
            }
            let ns = self.job()?.from_ns.clone();
            let mut scan = NamespaceScan::new(node, &ns, PAGE, Bytes::copy_from_slice(start));
            while let Some(keys) = scan.next_page().await? {
                let job = self.renew().await?;
                let began = Instant::now();
                let copied = copy::copy_keys(&job, &keys).await?;
                let next = scan.cursor().map_or(&b"done"[..], |c| c.as_ref()).to_vec();
                self.progress(&job, copied, Some((&field, &next))).await?;
                self.progressed_steps += 1;
                let pace = Duration::from_secs_f64(keys.len() as f64 / f64::from(job.spec.keys_per_sec));
                drop(job);
                tokio::time::sleep(pace.saturating_sub(began.elapsed())).await;
            }
        }
        let job = self.job()?;
        let p = job.progress();
        tracing::info!(tenant = %job.tenant, keys = p.keys_copied, bytes = p.bytes_copied, "migration backfill done");
        Ok(())
    }

    async fn progress(&self, job: &Migration, c: Copied, cursor: Option<(&str, &[u8])>) -> Result<(), Error> {
        add(job, "copied", c.keys).await?;
        add(job, "bytes", c.bytes).await?;
        if let Some((field, at)) = cursor {
            set(job, &[(field.as_bytes(), at)]).await?;
        }
        Ok(())
    }

    /// Copies the keys written since they were copied: `limit` of them at
    /// most, or until none is left (only while writes are held: under
    /// steady writes the set never empties).
    async fn drain(&self, job: &Migration, limit: Option<u64>) -> Result<u64, Error> {
        let nodes = job.source.nodes();
        let mut total = 0;
        // Node by node in turns, a batch each: under writes a node's set
        // never empties, and one node must not keep the others waiting.
        loop {
            let mut took = false;
            for node in &nodes {
                let batch = match limit {
                    Some(l) if total >= l => return Ok(total),
                    Some(l) => (l - total).min(DIRTY_BATCH),
                    None => DIRTY_BATCH,
                };
                let Some(keys) = super::dirty::take(job, node, batch).await? else { continue };
                took = true;
                // On an error they stay taken, and are copied first next time.
                copy::copy_keys(job, &keys).await?;
                super::dirty::done(job, node).await?;
                add(job, "recopied", keys.len() as u64).await?;
                total += keys.len() as u64;
            }
            if !took {
                return Ok(total);
            }
        }
    }

    /// Copies dirty keys until few are left, so the copy made while the
    /// tenant's writes are held is short: each pass copies what was written
    /// during the one before, fewer each time while copies outrun writes.
    async fn catch_up(&self, job: &Migration) -> Result<(), Error> {
        for _ in 0..CATCH_UP_PASSES {
            let dirty = super::dirty::count(job).await?;
            if dirty <= CATCH_UP_LEFT {
                break;
            }
            self.drain(job, Some(dirty)).await?;
        }
        Ok(())
    }

    /// Compares a sample of keys on both sides; those that differ are
    /// copied again and compared once more.
    async fn verify(&mut self) -> Result<(), Error> {
        let job = self.renew().await?;
        // What is dirty now; later writes are copied at the cut-over.
        let dirty = super::dirty::count(&job).await?;
        self.drain(&job, Some(dirty)).await?;
        let sample = self.sample(&job).await?;
        let mut differ = Vec::new();
        for chunk in sample.chunks(PAGE as usize) {
            differ.extend(super::verify::differing(&job, chunk, TTL_TOLERANCE_MS).await?);
        }
        let first = differ.len();
        if !differ.is_empty() {
            copy::copy_keys(&job, &differ).await?;
            let mut still = Vec::new();
            for chunk in differ.chunks(PAGE as usize) {
                still.extend(super::verify::differing(&job, chunk, TTL_TOLERANCE_MS).await?);
            }
            // Written meanwhile (their marks land just after their replies):
            // copied again at the cut-over.
            tokio::time::sleep(Duration::from_millis(200)).await;
            differ = super::dirty::not_dirty(&job, still).await?;
        }
        let (n, bad) = (sample.len().to_string(), differ.len().to_string());
        set(&job, &[(b"verified", n.as_bytes()), (b"mismatched", bad.as_bytes())]).await?;
        tracing::info!(tenant = %job.tenant, sampled = sample.len(), differed = first, still = differ.len(),
            "migration verified");
        if !differ.is_empty() {
            let shown = String::from_utf8_lossy(&differ[0]).into_owned();
            return Err(Error::new(
                Kind::Backend,
                format!("{} sampled keys differ on the target after a second copy (first: {shown:?})", differ.len()),
            ));
        }
        Ok(())
    }

    /// The first `verify_sample` keys of the old namespace.
    async fn sample(&self, job: &Migration) -> Result<Vec<Bytes>, Error> {
        let mut keys = Vec::new();
        for node in job.source.nodes() {
            let mut scan = NamespaceScan::new(&node, &job.from_ns, PAGE, Bytes::from_static(b"0"));
            while keys.len() < job.spec.verify_sample {
                let Some(page) = scan.next_page().await? else { break };
                keys.extend(page);
            }
        }
        keys.truncate(job.spec.verify_sample);
        Ok(keys)
    }

    /// The barrier: every proxy holds the tenant and has no unmarked write;
    /// then the last dirty keys are copied and the phase is `cut`.
    async fn switch(&mut self) -> Result<(), Error> {
        let job = self.renew().await?;
        let node = job.keys.node(&job.source);
        let n = answer::integer(&node.call(&[b"HINCRBY", &job.keys.state, b"switch", b"1"]).await?)?;
        set(&job, &[(b"phase", b"switch")]).await?;
        let began = Instant::now();
        let missing = loop {
            let missing = super::verify::unacked(&job, n as u64).await?;
            if missing.is_empty() {
                break None;
            }
            if began.elapsed() > SWITCH_TIMEOUT {
                break Some(missing);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        if let Some(missing) = missing {
            set(&job, &[(b"phase", b"verify")]).await?;
            let names: Vec<String> = missing.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect();
            return Err(Error::new(
                Kind::Backend,
                format!("cut-over given up: proxies {names:?} did not answer within {SWITCH_TIMEOUT:?}"),
            ));
        }
        let last = self.drain(&job, None).await?;
        set(&job, &[(b"phase", b"cut")]).await?;
        tracing::info!(tenant = %job.tenant, last_dirty = last, held_ms = began.elapsed().as_millis() as u64,
            "migration cut over");
        Ok(())
    }

    /// Deletes the old copies (unless `keep_old`), and the dirty set.
    async fn delete_old(&mut self) -> Result<(), Error> {
        let job = self.renew().await?;
        if !job.spec.keep_old {
            let rate = Some(job.spec.keys_per_sec);
            for node in job.source.nodes() {
                let deleted = delete_namespace(&node, &job.from_ns, PAGE, rate, |_| {}).await?;
                add(&job, "deleted", deleted).await?;
            }
        }
        super::dirty::clear(&job.source, &job.keys).await?;
        super::target::remove(&job.target, &job.keys).await;
        set(&job, &[(b"phase", b"done")]).await?;
        tracing::info!(tenant = %job.tenant, kept = job.spec.keep_old, "migration done");
        Ok(())
    }
}
