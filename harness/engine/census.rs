//! Census of the run's sockets: the client side (remote = the target) and, when the
//! target listens on this machine, the server side (local = the target). The probe's
//! netlink dump blocks, so it runs on the blocking pool.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use probe::{Filter, Prober, StateCounts};

use crate::report::CensusPair;

/// Takes client- and server-side censuses for one target.
#[derive(Debug, Clone)]
pub struct Censuses {
    prober: Arc<Mutex<Prober>>,
    client: Filter,
    server: Option<Filter>,
}

impl Censuses {
    pub fn new(prober: Prober, target: SocketAddr) -> Censuses {
        let ip = (!target.ip().is_unspecified()).then_some(target.ip());
        let client = Filter { remote_port: Some(target.port()), remote_addr: ip, ..Filter::default() };
        let server = is_local(target.ip()).then_some(Filter {
            local_port: Some(target.port()),
            local_addr: ip,
            ..Filter::default()
        });
        Censuses { prober: Arc::new(Mutex::new(prober)), client, server }
    }

    /// Take both censuses. A failed census counts nothing, with the reason returned.
    pub async fn take(&self) -> (CensusPair, Option<String>) {
        let (client, server) = (self.client, self.server);
        let taken = self.with_prober(move |prober| {
            let mut problem = None;
            let mut count = |filter: &Filter| {
                prober.census(filter).unwrap_or_else(|e| {
                    problem = Some(format!("census failed: {e}"));
                    StateCounts::default()
                })
            };
            let client = count(&client);
            let server = server.as_ref().map(&mut count);
            (CensusPair { client, server }, problem)
        });
        taken.await.unwrap_or_else(|e| (CensusPair::default(), Some(e)))
    }

    /// The client-side census of the sockets from one source address (all when `None`).
    pub async fn client_from(&self, source: Option<IpAddr>) -> StateCounts {
        let filter = Filter { local_addr: source, ..self.client };
        self.with_prober(move |prober| prober.census(&filter).unwrap_or_default()).await.unwrap_or_default()
    }

    /// Run `f` with the prober on the blocking pool (a netlink dump blocks).
    async fn with_prober<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Prober) -> T + Send + 'static,
    ) -> Result<T, String> {
        let prober = Arc::clone(&self.prober);
        tokio::task::spawn_blocking(move || f(&mut prober.lock().unwrap_or_else(|poisoned| poisoned.into_inner())))
            .await
            .map_err(|e| format!("census task failed: {e}"))
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

/// True when `ip` belongs to this machine (loopback, or bindable here).
pub fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}
