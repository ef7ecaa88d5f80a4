//! What Redis Sentinel answers, read into where a master is: `SENTINEL
//! MASTER`, `SENTINEL REPLICAS`, `+switch-master` messages and `ROLE`.
//!
//! Sentinels can disagree for a while (one that was cut off still names
//! the old master); each answer carries the configuration epoch of the
//! failover it knows of, and the newest epoch wins, as it does among the
//! sentinels themselves. Two answers of one epoch naming different masters
//! cannot come from a sane deployment and are reported, not guessed at.

use crate::answer::{self, AnswerError, Field};

/// One sentinel's view of the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterView {
    /// `host:port` (`[v6]:port`).
    pub addr: String,
    /// The epoch of the last failover this sentinel knows of.
    pub epoch: u64,
    /// The sentinel holds it down (`s_down` or `o_down`).
    pub down: bool,
}

fn field<'a>(fields: &'a [Field], name: &str) -> Option<&'a [u8]> {
    fields.iter().find(|(n, _)| n == name.as_bytes()).and_then(|(_, v)| v.first()).map(Vec::as_slice)
}

fn addr_of(fields: &[Field]) -> Option<String> {
    let ip = std::str::from_utf8(field(fields, "ip")?).ok()?;
    let port: u16 = std::str::from_utf8(field(fields, "port")?).ok()?.parse().ok()?;
    Some(join(ip, port))
}

/// `host:port`, bracketing an IPv6 address.
pub fn join(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn flags(fields: &[Field]) -> Vec<&str> {
    field(fields, "flags").and_then(|f| std::str::from_utf8(f).ok()).map_or_else(Vec::new, |f| f.split(',').collect())
}

/// Reads a `SENTINEL MASTER <name>` reply.
pub fn master_view(reply: &[u8]) -> Result<MasterView, AnswerError> {
    let fields = answer::fields(reply)?;
    let unexpected = || AnswerError::Unexpected("a SENTINEL MASTER reply without ip, port or config-epoch".into());
    let addr = addr_of(&fields).ok_or_else(unexpected)?;
    let epoch = field(&fields, "config-epoch")
        .and_then(|e| std::str::from_utf8(e).ok()?.parse().ok())
        .ok_or_else(unexpected)?;
    let down = flags(&fields).iter().any(|f| matches!(*f, "s_down" | "o_down"));
    Ok(MasterView { addr, epoch, down })
}

/// The replicas of a `SENTINEL REPLICAS <name>` reply that can serve reads:
/// not held down, connected, and linked to their master.
pub fn usable_replicas(reply: &[u8]) -> Result<Vec<String>, AnswerError> {
    let records = answer::records(reply)?;
    Ok(records
        .iter()
        .filter(|r| !flags(r).iter().any(|f| matches!(*f, "s_down" | "o_down" | "disconnected")))
        .filter(|r| field(r, "master-link-status") == Some(b"ok"))
        .filter_map(|r| addr_of(r))
        .collect())
}

/// The master the sentinels' answers name (each answer with the sentinel
/// it came from), or why there is none.
pub fn choose(master_name: &str, answers: &[(String, Result<MasterView, String>)]) -> Result<MasterView, String> {
    let views: Vec<(&String, &MasterView)> =
        answers.iter().filter_map(|(s, a)| a.as_ref().ok().map(|v| (s, v))).collect();
    let Some(newest) = views.iter().map(|(_, v)| v.epoch).max() else {
        let why: Vec<String> =
            answers.iter().map(|(s, a)| format!("{s}: {}", a.as_ref().err().map_or("", |e| e))).collect();
        return Err(format!("no sentinel named master {master_name:?} ({})", why.join("; ")));
    };
    let current: Vec<&(&String, &MasterView)> = views.iter().filter(|(_, v)| v.epoch == newest).collect();
    if current.iter().any(|(_, v)| v.addr != current[0].1.addr) {
        let said: Vec<String> = current.iter().map(|(s, v)| format!("{s} says {}", v.addr)).collect();
        return Err(format!("sentinels disagree on master {master_name:?} at epoch {newest}: {}", said.join(", ")));
    }
    Ok(current[0].1.clone())
}

/// The new master's address in a `+switch-master` message's payload
/// (`<name> <old ip> <old port> <new ip> <new port>`), if it is about
/// `master_name`.
pub fn switched_to(payload: &[u8], master_name: &str) -> Option<String> {
    let text = std::str::from_utf8(payload).ok()?;
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        [name, _, _, ip, port] if *name == master_name => Some(join(ip, port.parse().ok()?)),
        _ => None,
    }
}

/// What `ROLE` says a node is: `master`, `slave` or `sentinel`.
pub fn role(reply: &[u8]) -> Result<String, AnswerError> {
    answer::head(reply).map(|r| String::from_utf8_lossy(&r).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp2_fields(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", pairs.len() * 2).into_bytes();
        for (k, v) in pairs {
            for s in [k, v] {
                out.extend_from_slice(format!("${}\r\n{s}\r\n", s.len()).as_bytes());
            }
        }
        out
    }

    #[test]
    fn reads_a_master_view() {
        let reply = resp2_fields(&[
            ("name", "mymaster"),
            ("ip", "127.0.0.1"),
            ("port", "6380"),
            ("flags", "master"),
            ("config-epoch", "3"),
        ]);
        assert_eq!(master_view(&reply), Ok(MasterView { addr: "127.0.0.1:6380".into(), epoch: 3, down: false }));
        let down =
            resp2_fields(&[("ip", "::1"), ("port", "7"), ("flags", "master,s_down,o_down"), ("config-epoch", "0")]);
        assert_eq!(master_view(&down), Ok(MasterView { addr: "[::1]:7".into(), epoch: 0, down: true }));
        assert_eq!(
            master_view(b"-ERR No such master with that name\r\n"),
            Err(AnswerError::Refused("ERR No such master with that name".into()))
        );
        assert!(master_view(&resp2_fields(&[("ip", "127.0.0.1")])).is_err());
    }

    #[test]
    fn usable_replicas_are_up_and_linked() {
        let one = |port: &str, flags: &str, link: &str| {
            resp2_fields(&[("ip", "127.0.0.1"), ("port", port), ("flags", flags), ("master-link-status", link)])
        };
        let mut reply = b"*4\r\n".to_vec();
        reply.extend(one("1", "slave", "ok"));
        reply.extend(one("2", "s_down,slave", "ok"));
        reply.extend(one("3", "slave", "err"));
        reply.extend(one("4", "slave,disconnected", "ok"));
        assert_eq!(usable_replicas(&reply), Ok(vec!["127.0.0.1:1".to_string()]));
        assert_eq!(usable_replicas(b"*0\r\n"), Ok(vec![]));
    }

    fn view(addr: &str, epoch: u64) -> Result<MasterView, String> {
        Ok(MasterView { addr: addr.into(), epoch, down: false })
    }

    #[test]
    fn the_newest_epoch_wins_and_a_tie_of_two_masters_is_refused() {
        let answers =
            vec![("s1".into(), view("a:1", 1)), ("s2".into(), view("b:1", 2)), ("s3".into(), Err("down".into()))];
        assert_eq!(choose("m", &answers).unwrap().addr, "b:1");
        let tie = vec![("s1".into(), view("a:1", 2)), ("s2".into(), view("b:1", 2))];
        let e = choose("m", &tie).unwrap_err();
        assert_eq!(e, "sentinels disagree on master \"m\" at epoch 2: s1 says a:1, s2 says b:1");
        let none =
            vec![("s1".into(), Err("connection refused".into())), ("s2".into(), Err("ERR No such master".into()))];
        let e = choose("m", &none).unwrap_err();
        assert_eq!(e, "no sentinel named master \"m\" (s1: connection refused; s2: ERR No such master)");
    }

    #[test]
    fn switch_master_messages() {
        assert_eq!(
            switched_to(b"mymaster 127.0.0.1 6380 127.0.0.1 6381", "mymaster").as_deref(),
            Some("127.0.0.1:6381")
        );
        assert_eq!(switched_to(b"other 127.0.0.1 6380 127.0.0.1 6381", "mymaster"), None);
        assert_eq!(switched_to(b"mymaster 1 2", "mymaster"), None);
    }

    #[test]
    fn roles() {
        assert_eq!(role(b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n").as_deref(), Ok("master"));
        let replica = b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6380\r\n$9\r\nconnected\r\n:14\r\n";
        assert_eq!(role(replica).as_deref(), Ok("slave"));
    }
}
