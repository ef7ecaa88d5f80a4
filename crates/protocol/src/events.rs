//! Keyspace notifications as a tenant sees them. Redis publishes
//! `__keyspace@<db>__:<key>` (the event as the message) and
//! `__keyevent@<db>__:<event>` (the key as the message) for every tenant's
//! keys, by one server-wide `notify-keyspace-events`. Through tenantry a
//! keyspace channel gets the namespace after its `__:` (so a subscription
//! matches only the tenant's keys), a keyevent channel is subscribed as is
//! and each message is kept only if its key is the tenant's; names come back
//! stripped, and each tenant's own flags decide which events it gets.

use crate::strip::{aggregate_header, element_len};
use crate::Namespace;

const KEYSPACE: &[u8] = b"__keyspace@";
const KEYEVENT: &[u8] = b"__keyevent@";

/// `notify-keyspace-events` classes, as Redis's bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(u16);

/// Each flag character and its bit, in the order Redis writes them.
const CLASSES: &[(u8, u16)] = &[
    (b'g', 1 << 2),
    (b'$', 1 << 3),
    (b'l', 1 << 4),
    (b's', 1 << 5),
    (b'h', 1 << 6),
    (b'z', 1 << 7),
    (b'x', 1 << 8),
    (b'e', 1 << 9),
    (b't', 1 << 10),
    (b'd', 1 << 11),
];
const KEYSPACE_BIT: u16 = 1;
const KEYEVENT_BIT: u16 = 1 << 1;
const KEY_MISS: u16 = 1 << 12;
const NEW: u16 = 1 << 13;
/// `A`: every class but key misses and new keys.
const ALL: u16 = 0b1111_1111_1100;

impl Flags {
    /// Parses a CONFIG SET value; `None` for a character Redis refuses.
    pub fn parse(text: &[u8]) -> Option<Flags> {
        let mut bits = 0;
        for &c in text {
            bits |= match c {
                b'A' => ALL,
                b'K' => KEYSPACE_BIT,
                b'E' => KEYEVENT_BIT,
                b'm' => KEY_MISS,
                b'n' => NEW,
                _ => CLASSES.iter().find(|(f, _)| *f == c)?.1,
            };
        }
        Some(Flags(bits))
    }

    /// As CONFIG GET writes it (`AKE` for `KEA`).
    pub fn to_config(self) -> String {
        let mut out = String::new();
        if self.0 & ALL == ALL {
            out.push('A');
        } else {
            out.extend(CLASSES.iter().filter(|(_, bit)| self.0 & bit != 0).map(|(c, _)| char::from(*c)));
        }
        for (c, bit) in [('K', KEYSPACE_BIT), ('E', KEYEVENT_BIT), ('m', KEY_MISS), ('n', NEW)] {
            if self.0 & bit != 0 {
                out.push(c);
            }
        }
        out
    }

    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn bits(self) -> u16 {
        self.0
    }

    pub fn from_bits(bits: u16) -> Flags {
        Flags(bits)
    }

    /// Whether an event named `event` on a keyspace (or keyevent) channel
    /// is one these flags ask for.
    fn wants(self, keyspace: bool, event: &[u8]) -> bool {
        let channel = if keyspace { KEYSPACE_BIT } else { KEYEVENT_BIT };
        // An event not in the table: only for whoever asked for every class.
        let class = class_of(event).unwrap_or(ALL);
        self.0 & channel != 0 && self.0 & class == class
    }
}

/// The class Redis publishes each event under (Redis 7's `notifyKeyspaceEvent` calls).
fn class_of(event: &[u8]) -> Option<u16> {
    let class = match event {
        b"del" | b"expire" | b"rename_from" | b"rename_to" | b"move_from" | b"move_to" | b"copy_to" | b"restore"
        | b"persist" => b'g',
        b"set" | b"setrange" | b"incrby" | b"incrbyfloat" | b"append" | b"setbit" | b"pfadd" | b"pfmerge" => b'$',
        b"lpush" | b"rpush" | b"lpop" | b"rpop" | b"linsert" | b"lset" | b"lrem" | b"ltrim" | b"sortstore" => b'l',
        b"sadd" | b"srem" | b"spop" | b"sinterstore" | b"sunionstore" | b"sdiffstore" => b's',
        b"hset" | b"hincrby" | b"hincrbyfloat" | b"hdel" => b'h',
        b"zadd" | b"zincr" | b"zrem" | b"zrembyscore" | b"zrembyrank" | b"zrembylex" | b"zinterstore"
        | b"zunionstore" | b"zdiffstore" | b"zrangestore" | b"zpopmin" | b"zpopmax" => b'z',
        b"expired" => b'x',
        b"evicted" => b'e',
        b"xadd"
        | b"xdel"
        | b"xtrim"
        | b"xsetid"
        | b"xgroup-create"
        | b"xgroup-createconsumer"
        | b"xgroup-delconsumer"
        | b"xgroup-destroy"
        | b"xgroup-setid" => b't',
        b"keymiss" => return Some(KEY_MISS),
        b"new" => return Some(NEW),
        _ => return None,
    };
    CLASSES.iter().find(|(c, _)| *c == class).map(|(_, bit)| *bit)
}

/// Where the name part of an events channel starts: after `__:`.
fn name_at(channel: &[u8]) -> Option<(bool, usize)> {
    let keyspace = channel.starts_with(KEYSPACE);
    if !keyspace && !channel.starts_with(KEYEVENT) {
        return None;
    }
    let at = channel[KEYSPACE.len()..].windows(3).position(|w| w == b"__:")?;
    Some((keyspace, KEYSPACE.len() + at + 3))
}

/// The backend's name for a channel or pattern a client subscribes to, if
/// it is a keyspace-events one (else it is namespaced as any channel).
pub fn backend_channel(name: &[u8], ns: &Namespace) -> Option<Vec<u8>> {
    let (keyspace, at) = name_at(name)?;
    if !keyspace {
        return Some(name.to_vec());
    }
    let mut out = name[..at].to_vec();
    out.extend_from_slice(ns.as_bytes());
    out.extend_from_slice(&name[at..]);
    Some(out)
}

/// The client's name for a backend channel or pattern of keyspace events;
/// `None` for another tenant's key (or no events channel).
fn client_channel(name: &[u8], ns: &Namespace) -> Option<Vec<u8>> {
    let (keyspace, at) = name_at(name)?;
    if !keyspace {
        return Some(name.to_vec());
    }
    let key = ns.strip(&name[at..])?;
    let mut out = name[..at].to_vec();
    out.extend_from_slice(key);
    Some(out)
}

/// What becomes of a frame from a subscriber connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Not about keyspace events: strip it as any Pub/Sub frame.
    Other,
    /// An event the tenant must not see (another tenant's key, or a class
    /// its flags leave out).
    Drop,
    /// The frame under the client's names.
    Frame(Vec<u8>),
}

/// One frame (`message`, `pmessage`, or an (un)subscription's reply) as the
/// tenant with namespace `ns` and `flags` gets it; `flags` is asked for only
/// when the frame is a keyspace event (most frames of a subscriber are not).
pub fn deliver(frame: &[u8], ns: &Namespace, flags: impl FnOnce() -> Flags) -> Delivery {
    let Some(parts) = elements(frame) else { return Delivery::Other };
    let items = parts.items();
    let text = |i: usize| items.get(i).and_then(|e| e.text);
    let (Some(kind), Some(first)) = (text(0), text(1)) else { return Delivery::Other };
    if name_at(first).is_none() {
        return Delivery::Other;
    }
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(items.len());
    match (kind, items.len()) {
        (b"message", 3) | (b"pmessage", 4) => {
            let pattern = kind == b"pmessage";
            let (Some(channel), Some(payload)) = (text(1 + usize::from(pattern)), text(2 + usize::from(pattern)))
            else {
                return Delivery::Other;
            };
            let Some((keyspace, at)) = name_at(channel) else { return Delivery::Drop };
            let event = if keyspace { payload } else { &channel[at..] };
            if !flags().wants(keyspace, event) {
                return Delivery::Drop;
            }
            out.push(kind.to_vec());
            if pattern {
                let Some(p) = client_channel(first, ns) else { return Delivery::Drop };
                out.push(p);
            }
            let Some(c) = client_channel(channel, ns) else { return Delivery::Drop };
            out.push(c);
            let payload = if keyspace { Some(payload) } else { ns.strip(payload) };
            let Some(payload) = payload else { return Delivery::Drop };
            out.push(payload.to_vec());
        }
        _ => {
            // [kind, name, count]: an (un)subscription's reply.
            let Some(name) = client_channel(first, ns) else { return Delivery::Other };
            out.push(kind.to_vec());
            out.push(name);
        }
    }
    let mut bytes = format!("{}{}\r\n", char::from(parts.kind), items.len()).into_bytes();
    for (i, item) in items.iter().enumerate() {
        match out.get(i) {
            Some(s) => {
                bytes.extend_from_slice(format!("${}\r\n", s.len()).as_bytes());
                bytes.extend_from_slice(s);
                bytes.extend_from_slice(b"\r\n");
            }
            // The subscription count, as the backend wrote it.
            None => bytes.extend_from_slice(item.raw),
        }
    }
    Delivery::Frame(bytes)
}

/// A Pub/Sub frame's elements: at most four, held without allocating
/// (every message of every subscriber passes here).
struct Elements<'a> {
    kind: u8,
    slots: [Element<'a>; 4],
    len: usize,
}

impl<'a> Elements<'a> {
    fn items(&self) -> &[Element<'a>] {
        &self.slots[..self.len]
    }
}

#[derive(Default, Clone, Copy)]
struct Element<'a> {
    raw: &'a [u8],
    /// A bulk string's content.
    text: Option<&'a [u8]>,
}

/// The elements of an array or push frame of scalars.
fn elements(frame: &[u8]) -> Option<Elements<'_>> {
    let (kind, n, mut pos) = aggregate_header(frame).ok()??;
    if !matches!(kind, b'*' | b'>') || n > 4 {
        return None;
    }
    let mut slots = [Element::default(); 4];
    for slot in &mut slots[..n] {
        let len = element_len(frame.get(pos..)?).ok()?;
        let raw = frame.get(pos..pos + len)?;
        let text = (raw[0] == b'$' && raw.get(1) != Some(&b'-')).then(|| {
            let header = raw.iter().position(|&b| b == b'\r').unwrap_or(0) + 2;
            &raw[header.min(len - 2)..len - 2]
        });
        *slot = Element { raw, text };
        pos += len;
    }
    Some(Elements { kind, slots, len: n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Namespace {
        Namespace::new("app:").unwrap()
    }

    fn frame(kind: &str, parts: &[&str]) -> Vec<u8> {
        let mut out = format!("{kind}{}\r\n", parts.len()).into_bytes();
        for p in parts {
            match p.strip_prefix(':') {
                Some(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
                None => out.extend_from_slice(format!("${}\r\n{p}\r\n", p.len()).as_bytes()),
            }
        }
        out
    }

    fn kea() -> Flags {
        Flags::parse(b"KEA").unwrap()
    }

    #[test]
    fn flags_read_and_write_as_redis() {
        assert_eq!(kea().to_config(), "AKE");
        assert_eq!(Flags::parse(b"Kx$").unwrap().to_config(), "$xK");
        assert_eq!(Flags::parse(b"").unwrap().to_config(), "");
        assert_eq!(Flags::parse(b"KEAmn").unwrap().to_config(), "AKEmn");
        assert_eq!(Flags::parse(b"Q"), None);
        assert!(kea().contains(Flags::parse(b"Ex").unwrap()));
    }

    #[test]
    fn keyspace_channels_get_the_namespace_after_the_db() {
        assert_eq!(backend_channel(b"__keyspace@0__:*", &ns()).unwrap(), b"__keyspace@0__:app:*");
        assert_eq!(backend_channel(b"__keyspace@*__:user:1", &ns()).unwrap(), b"__keyspace@*__:app:user:1");
        assert_eq!(backend_channel(b"__keyevent@0__:set", &ns()).unwrap(), b"__keyevent@0__:set");
        assert_eq!(backend_channel(b"orders", &ns()), None);
    }

    #[test]
    fn messages_come_back_under_the_clients_names() {
        let m = frame("*", &["pmessage", "__keyspace@0__:app:*", "__keyspace@0__:app:k", "set"]);
        let want = frame("*", &["pmessage", "__keyspace@0__:*", "__keyspace@0__:k", "set"]);
        assert_eq!(deliver(&m, &ns(), kea), Delivery::Frame(want));
        let m = frame(">", &["message", "__keyevent@0__:del", "app:k"]);
        assert_eq!(deliver(&m, &ns(), kea), Delivery::Frame(frame(">", &["message", "__keyevent@0__:del", "k"])));
        let confirm = frame("*", &["psubscribe", "__keyspace@0__:app:*", ":1"]);
        assert_eq!(
            deliver(&confirm, &ns(), kea),
            Delivery::Frame(frame("*", &["psubscribe", "__keyspace@0__:*", ":1"]))
        );
        assert_eq!(deliver(&frame("*", &["message", "orders", "x"]), &ns(), kea), Delivery::Other);
    }

    #[test]
    fn other_tenants_keys_and_unwanted_classes_are_dropped() {
        let theirs = frame("*", &["message", "__keyevent@0__:set", "other:k"]);
        assert_eq!(deliver(&theirs, &ns(), kea), Delivery::Drop);
        let set = frame("*", &["message", "__keyevent@0__:set", "app:k"]);
        assert_eq!(deliver(&set, &ns(), || Flags::parse(b"Ex").unwrap()), Delivery::Drop, "no string class");
        assert_eq!(deliver(&set, &ns(), || Flags::parse(b"K$").unwrap()), Delivery::Drop, "no keyevent channel");
        let expired = frame("*", &["message", "__keyspace@0__:app:k", "expired"]);
        assert!(matches!(deliver(&expired, &ns(), || Flags::parse(b"Kx").unwrap()), Delivery::Frame(_)));
        let unknown = frame("*", &["message", "__keyspace@0__:app:k", "module-thing"]);
        assert_eq!(deliver(&unknown, &ns(), || Flags::parse(b"K$").unwrap()), Delivery::Drop);
        assert!(matches!(deliver(&unknown, &ns(), kea), Delivery::Frame(_)));
    }
}
