//! A real local Redis Cluster: `redis-server --cluster-enabled yes` nodes on
//! free loopback ports (client and bus ports both free), joined with
//! `redis-cli --cluster create`. Every node is killed when the handle drops.

use crate::RedisServer;
use anyhow::{bail, Context};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

/// How long a cluster takes to notice a dead master and promote its replica.
pub const NODE_TIMEOUT_MS: u64 = 1000;

impl RedisCluster {
    /// `masters` masters with `replicas` replicas each.
    pub fn start(masters: usize, replicas: usize) -> Self {
        Self::start_with(masters, replicas, &[])
    }

    /// With extra `redis-server` arguments for every node (`--maxmemory` ...).
    pub fn start_with(masters: usize, replicas: usize, extra: &[&str]) -> Self {
        Self::start_inner(masters, replicas, extra, None)
    }

    /// A cluster that speaks TLS only, to clients and on its bus (`--tls-cluster yes`).
    pub fn start_tls(pki: &crate::tls::Pki, masters: usize, replicas: usize) -> Self {
        Self::start_inner(masters, replicas, &["--tls-cluster", "yes", "--tls-replication", "yes"], Some(pki))
    }

    fn start_inner(masters: usize, replicas: usize, extra: &[&str], tls: Option<&crate::tls::Pki>) -> Self {
        let timeout = NODE_TIMEOUT_MS.to_string();
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| {
                let bus = crate::free_port().to_string();
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    &timeout,
                    "--cluster-config-file",
                    "nodes.conf",
                ];
                args.extend_from_slice(extra);
                match tls {
                    Some(pki) => RedisServer::start_tls(pki, &args),
                    None => RedisServer::start_with(&args),
                }
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        let tls_args = nodes[0].cli_args().split_off(2);
        let out = Command::new("redis-cli")
            .args(&tls_args)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let cluster = RedisCluster { nodes };
        cluster.wait_healthy(Duration::from_secs(30)).expect("cluster becomes healthy");
        // Replicas in sync, so WAIT and replica reads work from the start.
        let deadline = Instant::now() + Duration::from_secs(30);
        for (master, _) in cluster.masters() {
            loop {
                let info = cluster.cli(master, &["INFO", "replication"]);
                let online = info.lines().filter(|l| l.starts_with("slave") && l.contains("state=online")).count();
                if online >= replicas {
                    break;
                }
                assert!(Instant::now() < deadline, "replicas of node {master} not in sync: {info}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// Runs `redis-cli -p <node's port> args...` and returns its output.
    pub fn cli(&self, node: usize, args: &[&str]) -> String {
        self.nodes[node].cli(args)
    }

    /// Node indexes of the masters now, and of each one's replicas.
    pub fn masters(&self) -> Vec<(usize, Vec<usize>)> {
        let live = self.nodes.iter().position(|n| n.is_running()).expect("a live node");
        let text = self.cli(live, &["CLUSTER", "NODES"]);
        let mut masters = Vec::new();
        let mut replicas = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() < 8 {
                continue;
            }
            let addr = f[1].split('@').next().unwrap_or_default().to_string();
            let Some(index) = self.nodes.iter().position(|n| n.addr() == addr) else { continue };
            // A master serves slots (one without any is still joining as a replica).
            if f[2].contains("master") && !f[2].contains("fail") && f.len() > 8 {
                masters.push((index, f[0].to_string()));
            } else if f[2].contains("slave") {
                replicas.push((index, f[3].to_string()));
            }
        }
        masters
            .into_iter()
            .map(|(m, id)| (m, replicas.iter().filter(|(_, of)| *of == id).map(|(r, _)| *r).collect()))
            .collect()
    }

    /// The node index serving `slot` now, by each live master's own view.
    pub fn master_of_slot(&self, slot: u16) -> usize {
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.is_running()) {
            if !n.cli(&["ROLE"]).starts_with("master") {
                continue;
            }
            let nodes = n.cli(&["CLUSTER", "NODES"]);
            let me = nodes.lines().find(|l| l.contains("myself")).unwrap_or_default();
            if owns_slot(me, slot) {
                return i;
            }
        }
        panic!("no master owns slot {slot}");
    }

    /// Waits until every node says `cluster_state:ok` and agrees on the
    /// slot map's epoch-independent shape (all 16384 slots covered).
    pub fn wait_healthy(&self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let ok = self.nodes.iter().all(|n| {
                let info = n.cli(&["CLUSTER", "INFO"]);
                !n.is_running() || (info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384"))
            });
            if ok {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("cluster not healthy within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether a `CLUSTER NODES` line lists `slot` among its ranges.
fn owns_slot(line: &str, slot: u16) -> bool {
    line.split(' ').skip(8).any(|range| {
        if range.starts_with('[') {
            return false;
        }
        match range.split_once('-') {
            Some((a, b)) => a.parse::<u16>().is_ok_and(|a| a <= slot) && b.parse::<u16>().is_ok_and(|b| slot <= b),
            None => range.parse::<u16>() == Ok(slot),
        }
    })
}

pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .context("run redis-cli")
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
