//! Census of the run's sockets: the client side (remote = the target) and, when the
//! target listens on this machine, the server side (local = the target). The probe's
//! netlink dump blocks, so it runs on the blocking pool.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use probe::{Filter, Prober, SocketMemory, StateCounts};

use crate::report::unobserved::{CENSUS_CLIENT, CENSUS_SERVER};
use crate::report::{CensusPair, Unobserved};
use crate::socket::is_local;

/// Takes client- and server-side censuses for one target.
///
/// The two sides are two dumps, each walking the kernel's whole socket table: they run
/// on two threads at once, each with its own netlink socket, so a census of both sides
/// takes about as long as one (measured: 1M loopback connections, 2M sockets, ~1 s per
/// side).
#[derive(Debug, Clone)]
pub struct Censuses {
    prober: Arc<Mutex<Prober>>,
    client: Filter,
    /// The server side's filter and its own prober, when the target is on this machine.
    server: Option<(Filter, Arc<Mutex<Prober>>)>,
}

impl Censuses {
    pub fn new(prober: Prober, target: SocketAddr) -> Censuses {
        let ip = (!target.ip().is_unspecified()).then_some(target.ip());
        let client = Filter { remote_port: Some(target.port()), remote_addr: ip, ..Filter::default() };
        let server = is_local(target.ip()).then(|| {
            let filter = Filter { local_port: Some(target.port()), local_addr: ip, ..Filter::default() };
            (filter, Arc::new(Mutex::new(Prober::new())))
        });
        Censuses { prober: Arc::new(Mutex::new(prober)), client, server }
    }

    /// Take both censuses, at once. A side whose census failed (on netlink and on the
    /// /proc fallback alike) counts nothing and is marked unobserved, with the reason.
    pub async fn take(&self) -> (CensusPair, Unobserved) {
        let count = |prober: &mut Prober, filter: &Filter| prober.census(filter).map_err(|e| e.to_string());
        let client_filter = self.client;
        let client = blocking(Arc::clone(&self.prober), move |p| count(p, &client_filter));
        let server = self.server.as_ref().map(|(filter, prober)| {
            let filter = *filter;
            blocking(Arc::clone(prober), move |p| count(p, &filter))
        });
        let (client, server) = match server {
            Some(server) => {
                let (c, s) = tokio::join!(client, server);
                (c, Some(s))
            }
            None => (client.await, None),
        };
        let mut unobserved = Unobserved::default();
        let mut counted = |figure: &str, side: &str, taken: Result<Result<StateCounts, String>, String>| {
            taken.and_then(|r| r).unwrap_or_else(|e| {
                unobserved.mark(figure, format!("the {side}-side census failed: {e}"));
                StateCounts::default()
            })
        };
        let client = counted(CENSUS_CLIENT, "client", client);
        let server = server.map(|s| counted(CENSUS_SERVER, "server", s));
        (CensusPair { client, server }, unobserved)
    }

    /// The kernel memory of each side's sockets (sock_diag `INET_DIAG_SKMEMINFO`), both
    /// dumps at once; the server side only when the target is on this machine.
    pub async fn memory(&self) -> (Result<SocketMemory, String>, Option<Result<SocketMemory, String>>) {
        let read = |prober: &mut Prober, filter: &Filter| prober.memory(filter).map_err(|e| e.to_string());
        let client_filter = self.client;
        let client = blocking(Arc::clone(&self.prober), move |p| read(p, &client_filter));
        let server = self.server.as_ref().map(|(filter, prober)| {
            let filter = *filter;
            blocking(Arc::clone(prober), move |p| read(p, &filter))
        });
        let (client, server) = match server {
            Some(server) => {
                let (c, s) = tokio::join!(client, server);
                (c, Some(s))
            }
            None => (client.await, None),
        };
        (client.and_then(|r| r), server.map(|s| s.and_then(|r| r)))
    }

    /// The client-side census of the sockets from one source address (all when `None`);
    /// `None` when the census failed.
    pub async fn client_from(&self, source: Option<IpAddr>) -> Option<StateCounts> {
        let filter = Filter { local_addr: source, ..self.client };
        blocking(Arc::clone(&self.prober), move |prober| prober.census(&filter).ok()).await.ok().flatten()
    }

    /// The backend name and its warning, if any.
    pub fn backend(&self) -> (String, Option<String>) {
        let prober = self.prober.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let name = match prober.backend() {
            probe::Backend::SockDiag => "sock_diag",
            probe::Backend::ProcNet => "proc_net",
        };
        (name.to_string(), prober.warning().map(str::to_string))
    }
}

/// Run `f` with `prober` on the blocking pool (a netlink dump blocks).
async fn blocking<T: Send + 'static>(
    prober: Arc<Mutex<Prober>>,
    f: impl FnOnce(&mut Prober) -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(move || f(&mut prober.lock().unwrap_or_else(|poisoned| poisoned.into_inner())))
        .await
        .map_err(|e| format!("census task failed: {e}"))
}
