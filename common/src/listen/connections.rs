//! How many connections a listener holds, and whose: a bound for the
//! listener, an optional one per client address, and what happens at the
//! bound. Held on accept and close only, never per request.
//!
//! At the bound, the oldest idle connection (no request in flight and no
//! answer being written: a keep-alive waiting, or a client that opened and
//! sent nothing) is asked to close, and the new one is served: idle
//! connections cannot keep a client out, as nginx reuses its keep-alive
//! connections when it runs out. An asked connection still counts until it
//! has closed, which it does within [`EVICTION_GRACE`] whatever its client
//! does, so the bound holds on descriptors, not only on a count. When every
//! connection is busy or closing, or the client's address holds its share,
//! the new one is answered 503 (JSON, `Retry-After`; a TLS one is closed
//! without a word) at once, instead of waiting in the kernel's queue until
//! it times out.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};

pub const OPEN: &str = "sluice_connections_open";
pub const REFUSED: &str = "sluice_connections_refused_total";
pub const EVICTED: &str = "sluice_connections_evicted_total";

/// Default request head bound (request line and headers), as Envoy's 60 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;

/// Most header fields in a request: hyper's fixed bound (a larger one
/// would put every request's header table on the heap).
pub const MAX_HEADERS: usize = 100;

/// Default idle keep-alive and header wait: above the 60 s of most load
/// balancers, so they never reuse a connection this side has closed.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(75);

/// Refusals being written at once; past it a refused connection is closed
/// without an answer (each holds a descriptor while its answer drains).
const MAX_REFUSING: usize = 64;

/// How long a connection asked to close may take to finish what it has in
/// flight (a request being read, an answer being written) before it is cut.
pub const EVICTION_GRACE: Duration = Duration::from_secs(2);

/// What one listener holds to, whatever its clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one client address; 0: no such bound
    /// (behind a Kubernetes Service or a load balancer every client may
    /// arrive from one address).
    pub max_per_address: usize,
    /// How long a client may take to send a request's head; also how long
    /// a keep-alive connection may stay idle.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers); past it 431.
    pub max_header_bytes: usize,
    /// HTTP/2 beside HTTP/1.1 (gRPC, h2c), with its own bounds; `None`:
    /// HTTP/1.1 only.
    pub http2_opt: Option<Http2Limits>,
}

/// What bounds an HTTP/2 connection, beyond what bounds every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    /// Streams (requests) open at once on one connection: the per-connection
    /// bound that HTTP/1.1's one request at a time gives for free.
    pub max_concurrent_streams: u32,
    /// Streams a client may open and reset before they are served (the
    /// rapid reset attack, CVE-2023-44487): past it the connection is closed.
    pub max_pending_reset_streams: usize,
    /// Streams the server may reset for a client's errors before it
    /// closes the connection.
    pub max_error_reset_streams: usize,
    /// A ping after this long without a frame from the client; unanswered
    /// for `keep_alive_timeout`, the connection is closed.
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Http2Limits {
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_pending_reset_streams: 20,
            max_error_reset_streams: 1024,
            keep_alive_interval: Duration::from_secs(60),
            keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

/// Streams at once on one HTTP/2 connection (nginx's default): one client
/// connection cannot take more of the server's admission slots than that.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 128;

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: default_max_connections(open_files_limit()),
            max_per_address: 0,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            http2_opt: None,
        }
    }
}

/// A quarter of the process's descriptors per listener (a process has at
/// most two: the predict API and the admin API), the rest for model files,
/// logs, the database and the clients it calls; between 64 and 65,536.
pub fn default_max_connections(open_files: u64) -> usize {
    (open_files / 4).clamp(64, 65_536) as usize
}

/// The soft limit on open descriptors (`RLIMIT_NOFILE`); 1024 when unknown.
pub fn open_files_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
        .min(1 << 20)
}

/// Why a connection was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds `max_connections`, none of them idle.
    Full,
    /// The client's address holds `max_per_address`.
    Address,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "full",
            Refusal::Address => "address",
        }
    }
}

/// One open connection, as the table sees it.
pub struct ConnectionState {
    /// Its client, as the per-address bound counts it.
    client: IpAddr,
    /// Requests in flight on it, from their head to their answer's last byte.
    busy: AtomicUsize,
    /// Whether a request has come on it yet.
    entered: AtomicBool,
    evicted: AtomicBool,
    /// Told when the table wants it closed.
    pub evict: Notify,
}

impl ConnectionState {
    /// Counts a request in flight until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> Busy {
        self.entered.store(true, Ordering::Release);
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Whether a request has come on it since it opened.
    pub fn has_entered(&self) -> bool {
        self.entered.load(Ordering::Acquire)
    }

    /// Whether a request is in flight on it (hyper writes its own answers
    /// only between requests).
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }
}

pub struct Busy(Arc<ConnectionState>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct Open {
    next_id: u64,
    /// By age: the first idle one is the oldest. Those asked to close stay
    /// until they have.
    connections: BTreeMap<u64, Arc<ConnectionState>>,
    /// How many of them were asked to close.
    closing: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// Whom the per-address bound counts: an IPv4 address, or an IPv6 /64 (a
/// client is routinely given a whole /64), an IPv4-mapped address as IPv4.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// The connections of one listener.
pub struct ConnectionTable {
    limits: ConnectionLimits,
    /// The metrics' `listener` label: `predict` or `admin`.
    name: &'static str,
    open: Mutex<Open>,
    refusing: Arc<Semaphore>,
}

/// A place in the table, given back when the connection ends.
pub struct Slot {
    table: Arc<ConnectionTable>,
    id: u64,
    pub state: Arc<ConnectionState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.table.lock();
        open.connections.remove(&self.id);
        if self.state.evicted.load(Ordering::Acquire) {
            open.closing -= 1;
        }
        if let Some(count) = open.per_address.get_mut(&self.state.client) {
            *count -= 1;
            if *count == 0 {
                open.per_address.remove(&self.state.client);
            }
        }
        metrics::gauge!(OPEN, "listener" => self.table.name).set(open.connections.len() as f64);
    }
}

impl ConnectionTable {
    pub fn new(name: &'static str, limits: ConnectionLimits) -> Arc<ConnectionTable> {
        Arc::new(ConnectionTable {
            limits,
            name,
            open: Mutex::new(Open::default()),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for a connection from `ip`, making room by closing the
    /// oldest idle one when the listener is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let client = client_of(ip);
        let mut open = self.lock();
        let from_address = open.per_address.get(&client).copied().unwrap_or(0);
        if self.limits.max_per_address > 0 && from_address >= self.limits.max_per_address {
            return Err(self.refused(Refusal::Address));
        }
        let max = self.limits.max_connections.max(1);
        if open.connections.len() - open.closing >= max {
            // Room is made by asking the oldest idle connection to close.
            // It counts until it has (within the grace), and at most a
            // quarter of the bound may be closing at once: the descriptors
            // held stay under 1.25 times the bound, whatever clients do.
            if open.closing >= (max / 4).max(1) {
                return Err(self.refused(Refusal::Full));
            }
            let idle = open
                .connections
                .values()
                .find(|state| !state.evicted.load(Ordering::Acquire) && !state.is_busy())
                .cloned();
            let Some(state) = idle else {
                return Err(self.refused(Refusal::Full));
            };
            state.evicted.store(true, Ordering::Release);
            state.evict.notify_one();
            open.closing += 1;
            metrics::counter!(EVICTED, "listener" => self.name).increment(1);
        }
        open.next_id += 1;
        let id = open.next_id;
        let state = Arc::new(ConnectionState {
            client,
            busy: AtomicUsize::new(0),
            entered: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        });
        open.connections.insert(id, state.clone());
        *open.per_address.entry(client).or_default() += 1;
        metrics::gauge!(OPEN, "listener" => self.name).set(open.connections.len() as f64);
        Ok(Slot {
            table: self.clone(),
            id,
            state,
        })
    }

    fn refused(&self, refusal: Refusal) -> Refusal {
        metrics::counter!(REFUSED, "listener" => self.name, "reason" => refusal.as_str()).increment(1);
        refusal
    }

    /// Answers a refused plain-HTTP connection 503 and closes it, reading
    /// what the client sent meanwhile so that the answer is not lost to a
    /// reset. A TLS connection is closed without a word: answering would
    /// cost a handshake.
    pub fn refuse(&self, mut stream: TcpStream, refusal: Refusal, tls: bool) {
        let Ok(permit) = self.refusing.clone().try_acquire_owned() else {
            return;
        };
        if tls {
            return;
        }
        let message = match refusal {
            Refusal::Full => "the server holds as many connections as it may, all busy: retry later",
            Refusal::Address => {
                "this client address holds as many connections as it may: reuse one, or retry later"
            }
        };
        let response = super::response(503, "Service Unavailable", message, &[("retry-after", "1")]);
        tokio::spawn(async move {
            let answer = async {
                stream.write_all(&response).await?;
                stream.shutdown().await?;
                let mut sink = [0u8; 4096];
                let mut drained = 0;
                while drained < 64 * 1024 {
                    match stream.read(&mut sink).await? {
                        0 => break,
                        read => drained += read,
                    }
                }
                Ok::<_, std::io::Error>(())
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max_connections: usize, max_per_address: usize) -> Arc<ConnectionTable> {
        ConnectionTable::new(
            "test",
            ConnectionLimits {
                max_connections,
                max_per_address,
                ..ConnectionLimits::default()
            },
        )
    }

    #[test]
    fn an_idle_connection_makes_room_and_a_busy_one_does_not() {
        let table = table(2, 0);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let oldest = table.admit(ip).unwrap();
        let busy = table.admit(ip).unwrap();
        let _request = busy.state.enter();
        // Full: the oldest is idle, so it is asked to close.
        let newest = table.admit(ip).unwrap();
        assert!(oldest.state.evicted.load(Ordering::Acquire));
        assert!(!busy.state.evicted.load(Ordering::Acquire));
        // Full again, and both are busy now: refused.
        let _also = newest.state.enter();
        assert_eq!(table.admit(ip).err(), Some(Refusal::Full));
        drop(oldest);
        assert_eq!(table.lock().connections.len(), 2);
    }

    #[test]
    fn a_connection_asked_to_close_counts_until_it_has() {
        let table = table(4, 0);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut open: Vec<Slot> = (0..4).map(|_| table.admit(ip).unwrap()).collect();
        // The fifth asks the first to close; a sixth must wait for it.
        open.push(table.admit(ip).unwrap());
        assert!(open[0].state.evicted.load(Ordering::Acquire));
        assert_eq!(table.admit(ip).err(), Some(Refusal::Full));
        assert_eq!(table.lock().connections.len(), 5);
        open.remove(0);
        // Gone: the next asks the second-oldest to close.
        open.push(table.admit(ip).unwrap());
        assert!(open[0].state.evicted.load(Ordering::Acquire));
        assert_eq!(table.lock().connections.len(), 5);
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_of(one), client_of(same));
        assert_ne!(client_of(one), client_of(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_of(mapped), IpAddr::from([10, 0, 0, 1]));
    }

    #[test]
    fn one_address_holds_its_share_only() {
        let table = table(10, 2);
        let one: IpAddr = [127, 0, 0, 1].into();
        let two: IpAddr = [127, 0, 0, 2].into();
        let first = table.admit(one).unwrap();
        let _second = table.admit(one).unwrap();
        assert_eq!(table.admit(one).err(), Some(Refusal::Address));
        assert!(table.admit(two).is_ok());
        drop(first);
        assert!(table.admit(one).is_ok());
    }

    #[test]
    fn the_default_follows_the_descriptor_limit() {
        assert_eq!(default_max_connections(1024), 256);
        assert_eq!(default_max_connections(100), 64);
        assert_eq!(default_max_connections(1 << 20), 65_536);
    }
}
