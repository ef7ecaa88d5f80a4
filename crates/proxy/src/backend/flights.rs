//! Request coalescing (single flight): while a read is in flight to the
//! backend, identical reads of the same tenant wait for its reply instead of
//! going to the backend themselves. The backend connection that reads the
//! leading request's reply hands a copy to every waiter at once, so no
//! waiter depends on how fast the leading client reads its own replies.
//!
//! A flight is keyed by the request exactly as it goes to the backend
//! (namespace included) and by the protocol, since a reply's encoding
//! depends on it. Flights are numbered: a client that wrote may join only
//! flights that began after its write was answered (`floor`), so it always
//! reads its own writes.
//!
//! On a cluster, a leading read answered MOVED or ASK (its slot moved since
//! tenantry's map was made) does not hand the redirection to its waiters,
//! who would each follow it to the new master, a stampede there: the flight
//! stays in the air, follows the redirection once, and lands with the
//! value.

use super::cluster::Cluster;
use super::conn::BatchReply;
use super::redirect::{follow_redirects, Follow};
use bytes::Bytes;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tenantry_protocol::Protocol;
use tokio::sync::oneshot;

/// One tenant's reads in flight that others may share.
#[derive(Default)]
pub struct Flights {
    /// Hashed once per read: the leader keeps the hash to land by.
    map: Mutex<HashTable<Flight>>,
    hasher: DefaultHashBuilder,
    /// The number of the last flight begun.
    numbered: AtomicU64,
}

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Flights({} in the air)", self.in_air())
    }
}

struct Flight {
    proto: Protocol,
    request: Request,
    number: u64,
    waiters: Vec<oneshot::Sender<BatchReply>>,
}

/// A flight's request, the key its joiners are matched by: held in the
/// flight itself when short (a GET of a key of up to some 40 bytes), so a
/// read that leads a flight allocates nothing for it.
enum Request {
    Inline { bytes: [u8; INLINE], len: u8 },
    Heap(Bytes),
}

const INLINE: usize = 64;

impl Request {
    fn new(request: &[u8]) -> Request {
        match u8::try_from(request.len()) {
            Ok(len) if request.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..request.len()].copy_from_slice(request);
                Request::Inline { bytes, len }
            }
            _ => Request::Heap(Bytes::copy_from_slice(request)),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Request::Inline { bytes, len } => &bytes[..usize::from(*len)],
            Request::Heap(b) => b,
        }
    }
}

/// What a read does about the flights in the air.
pub enum Boarding {
    /// It goes to the backend, and its reply is handed to whoever joins.
    Leads(Leader),
    /// It waits for the reply of an identical read already sent.
    Joined(oneshot::Receiver<BatchReply>),
    /// It goes to the backend alone: an identical read is in flight but
    /// began before this client's write was answered.
    Alone,
}

impl Flights {
    /// The number of the last flight begun: a client whose writes are all
    /// answered now may join any flight numbered above it.
    pub fn now(&self) -> u64 {
        self.numbered.load(Ordering::Acquire)
    }

    /// Joins the flight of `request` if one numbered above `floor` is in
    /// the air, or begins one.
    pub fn board(self: &Arc<Self>, proto: Protocol, request: &[u8], floor: u64) -> Boarding {
        let hash = self.hasher.hash_one((proto as u8, request));
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = map.find_mut(hash, |f| f.proto == proto && f.request.as_bytes() == request) {
            if flight.number <= floor {
                return Boarding::Alone;
            }
            let (tx, rx) = oneshot::channel();
            flight.waiters.push(tx);
            return Boarding::Joined(rx);
        }
        let number = self.numbered.fetch_add(1, Ordering::AcqRel) + 1;
        // Only a new flight copies the request.
        let flight = Flight { proto, request: Request::new(request), number, waiters: Vec::new() };
        map.insert_unique(hash, flight, |f| self.hasher.hash_one((f.proto as u8, f.request.as_bytes())));
        Boarding::Leads(Leader { flights: Some(self.clone()), hash, number, follow: None })
    }

    /// The request of a flight still in the air.
    fn request(&self, hash: u64, number: u64) -> Option<(Protocol, Bytes)> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.find(hash, |f| f.number == number).map(|f| (f.proto, Bytes::copy_from_slice(f.request.as_bytes())))
    }

    /// Flights in the air (for tests and `/tenants`).
    pub fn in_air(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Ends a flight: its waiters get `reply`, or see their sender dropped
    /// (`None`: the leading request got no reply), which answers them with
    /// the lost connection's error.
    fn land(&self, hash: u64, number: u64, reply: Option<&[u8]>) -> usize {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let Ok(entry) = map.find_entry(hash, |f| f.number == number) else { return 0 };
        let (flight, _) = entry.remove();
        drop(map);
        let n = flight.waiters.len();
        if let (Some(reply), true) = (reply, n > 0) {
            let reply = Bytes::copy_from_slice(reply);
            for w in flight.waiters {
                let _ = w.send(Ok(reply.clone()));
            }
        }
        n
    }
}

/// The leading read of a flight, carried with its batch to the backend
/// connection, which lands it when the reply arrives. Dropped unlanded (the
/// connection broke), it ends the flight and its waiters get an error.
pub struct Leader {
    /// `None` once landed.
    flights: Option<Arc<Flights>>,
    hash: u64,
    /// Flights are numbered uniquely: the number finds this one among those
    /// of the same hash.
    number: u64,
    /// On a cluster: where to follow a redirection, and as which client.
    follow: Option<(Arc<Cluster>, u64)>,
}

impl Leader {
    /// A leader on `cluster`, which follows a MOVED or ASK reply itself
    /// before it lands.
    pub fn on_cluster(mut self, cluster: Arc<Cluster>, client: u64) -> Leader {
        self.follow = Some((cluster, client));
        self
    }

    /// Hands the reply to the flight's waiters.
    pub fn land(mut self, reply: &[u8]) {
        let Some(flights) = self.flights.take() else { return };
        let (hash, number) = (self.hash, self.number);
        // Only a cluster's leader answered MOVED or ASK looks further.
        let redirected = self.follow.take().filter(|_| tenantry_protocol::cluster::parse_redirect(reply).is_some());
        let Some(((cluster, client), (proto, request))) = redirected.zip(flights.request(hash, number)) else {
            flights.land(hash, number, Some(reply));
            return;
        };
        let reply = Bytes::copy_from_slice(reply);
        tokio::spawn(async move {
            let follow = Follow { cluster, client, proto, request, transaction: false };
            // Whatever comes back (the value, or the redirection after too
            // many hops) lands as the flight's reply.
            let landed = follow_redirects(follow, reply.clone()).await.unwrap_or(reply);
            flights.land(hash, number, Some(&landed));
        });
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(f) = self.flights.take() {
            f.land(self.hash, self.number, None);
        }
    }
}

/// A batch's leading reads, by their index in the batch, in index order.
/// Boxed: most batches have none, and a batch is moved through a channel
/// and a queue, where a pointer costs less than the list (measured: held
/// inline, it cost every GET at pipeline 1 some 240 instructions with
/// coalescing off). In the box the first leader is held inline: a batch of
/// one leading read, as at pipeline 1, allocates once.
#[derive(Default)]
pub struct Shares(Option<Box<ShareList>>);

#[derive(Default)]
struct ShareList {
    first: Option<(usize, Leader)>,
    rest: Vec<(usize, Option<Leader>)>,
    /// The next of `rest` to land.
    next: usize,
}

impl Shares {
    pub fn push(&mut self, at: usize, leader: Leader) {
        let list = self.0.get_or_insert_default();
        if list.first.is_none() && list.rest.is_empty() {
            list.first = Some((at, leader));
        } else {
            list.rest.push((at, Some(leader)));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Called with each reply of the batch in turn: lands the leader at `index`.
    pub fn reply(&mut self, index: usize, reply: &[u8]) {
        let Some(list) = &mut self.0 else { return };
        if let Some((at, _)) = &list.first {
            if *at == index {
                if let Some((_, leader)) = list.first.take() {
                    leader.land(reply);
                }
            }
            // `rest` comes after the first, in index order.
            return;
        }
        if let Some((at, leader)) = list.rest.get_mut(list.next) {
            if *at == index {
                if let Some(leader) = leader.take() {
                    leader.land(reply);
                }
                list.next += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &[u8] = b"*2\r\n$3\r\nGET\r\n$3\r\nt:k\r\n";

    fn lead(f: &Arc<Flights>, floor: u64) -> Leader {
        match f.board(Protocol::Resp2, GET, floor) {
            Boarding::Leads(l) => l,
            _ => panic!("expected to lead"),
        }
    }

    #[test]
    fn waiters_get_the_leaders_reply_and_the_flight_ends() {
        let f = Arc::new(Flights::default());
        let leader = lead(&f, 0);
        let Boarding::Joined(mut a) = f.board(Protocol::Resp2, GET, 0) else { panic!() };
        let Boarding::Joined(mut b) = f.board(Protocol::Resp2, GET, 0) else { panic!() };
        // Another protocol's reply is encoded otherwise: a flight of its own.
        assert!(matches!(f.board(Protocol::Resp3, GET, 0), Boarding::Leads(_)));
        leader.land(b"$1\r\nv\r\n");
        assert_eq!(a.try_recv().unwrap().unwrap(), Bytes::from_static(b"$1\r\nv\r\n"));
        assert_eq!(b.try_recv().unwrap().unwrap(), Bytes::from_static(b"$1\r\nv\r\n"));
        assert_eq!(f.in_air(), 0);
        // Landed: the next read leads a new flight.
        assert!(matches!(f.board(Protocol::Resp2, GET, 0), Boarding::Leads(_)));
    }

    #[test]
    fn a_client_never_joins_a_flight_older_than_its_write() {
        let f = Arc::new(Flights::default());
        let _leader = lead(&f, 0);
        // Its write was answered after that flight began.
        let floor = f.now();
        assert!(matches!(f.board(Protocol::Resp2, GET, floor), Boarding::Alone));
        assert!(matches!(f.board(Protocol::Resp2, GET, floor - 1), Boarding::Joined(_)));
    }

    #[test]
    fn a_lost_leader_ends_the_flight_and_its_waiters_see_the_loss() {
        let f = Arc::new(Flights::default());
        let leader = lead(&f, 0);
        let Boarding::Joined(mut a) = f.board(Protocol::Resp2, GET, 0) else { panic!() };
        drop(leader);
        assert!(a.try_recv().is_err());
        assert_eq!(f.in_air(), 0);
    }

    #[test]
    fn long_requests_are_matched_as_short_ones_are() {
        let f = Arc::new(Flights::default());
        let long = [b"*2\r\n$3\r\nGET\r\n$100\r\n".as_slice(), &[b'k'; 100], b"\r\n"].concat();
        for request in [&long[..INLINE], &long[..INLINE + 1], &long[..]] {
            let Boarding::Leads(leader) = f.board(Protocol::Resp2, request, 0) else { panic!() };
            let Boarding::Joined(mut waiter) = f.board(Protocol::Resp2, request, 0) else { panic!() };
            // One byte less is another request.
            assert!(matches!(f.board(Protocol::Resp2, &request[..request.len() - 1], 0), Boarding::Leads(_)));
            leader.land(b"$1\r\nv\r\n");
            assert_eq!(waiter.try_recv().unwrap().unwrap(), Bytes::from_static(b"$1\r\nv\r\n"));
        }
    }

    #[test]
    fn shares_land_at_their_index_only() {
        let f = Arc::new(Flights::default());
        let mut shares = Shares::default();
        shares.push(1, lead(&f, 0));
        let Boarding::Joined(mut a) = f.board(Protocol::Resp2, GET, 0) else { panic!() };
        shares.reply(0, b"+OK\r\n");
        assert!(a.try_recv().is_err(), "not yet");
        shares.reply(1, b":1\r\n");
        assert_eq!(a.try_recv().unwrap().unwrap(), Bytes::from_static(b":1\r\n"));
    }
}
