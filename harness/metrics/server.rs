//! The HTTP side of `--metrics`: a tokio accept loop answering `GET /metrics` with the
//! registry's OpenMetrics text. Each connection has a deadline and the scrapers served
//! at once are bounded, so a slow or silent scraper can neither hang the run's end nor
//! stop the others from being answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long one scrape may take, request to last byte.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(5);
/// Scrapers answered at once; more are told 503 and closed.
const MAX_SCRAPERS: usize = 16;
/// Scrapers told 503 at once (each within [`REFUSE_DEADLINE`]); past them, closed unanswered.
const MAX_REFUSED: usize = 64;
const REFUSE_DEADLINE: Duration = Duration::from_secs(1);
/// The longest request head read.
const MAX_REQUEST: usize = 8 * 1024;
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics address, bound before anything connects.
#[derive(Debug)]
pub struct MetricsServer {
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

/// Bind `addr` (port 0: any free port), outside any runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<MetricsServer> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    Ok(MetricsServer { listener, addr })
}

impl MetricsServer {
    /// The bound address (the port chosen when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve `registry` until `stop`; scrapes in progress then end at once. Must be
    /// called inside a tokio runtime.
    pub fn serve(self, registry: Registry, stop: CancellationToken) -> std::io::Result<JoinHandle<()>> {
        let listener = TcpListener::from_std(self.listener)?;
        Ok(tokio::spawn(accept_loop(listener, Arc::new(registry), stop)))
    }
}

async fn accept_loop(listener: TcpListener, registry: Arc<Registry>, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_SCRAPERS));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSED));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            // Out of descriptors, most likely: the run needs them more; try again soon.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                tracker.spawn(async move {
                    let _ = tokio::time::timeout(REFUSE_DEADLINE, refuse(stream)).await;
                    drop(permit);
                });
            }
            continue;
        };
        let (registry, stop) = (Arc::clone(&registry), stop.clone());
        tracker.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::timeout(SCRAPE_DEADLINE, answer(stream, &registry)) => {}
            }
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// Read one request head and answer it; the connection then closes.
async fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = path.split(|b| *b == b'?').next().unwrap_or_default();
    let response = match (method, path) {
        (b"GET", b"/metrics") => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => response("200 OK", CONTENT_TYPE, &body),
                Err(_) => response("500 Internal Server Error", "text/plain", "encoding the metrics failed\n"),
            }
        }
        (b"GET", _) => response("404 Not Found", "text/plain", "sockcap serves its metrics at /metrics\n"),
        _ => response("405 Method Not Allowed", "text/plain", "GET /metrics\n"),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Tell a scraper past the bound 503; its request is read and dropped, so that closing
/// with it unread does not reset the connection before the answer is read.
async fn refuse(mut stream: TcpStream) -> std::io::Result<()> {
    let busy = response("503 Service Unavailable", "text/plain", "too many scrapers at once; try again\n");
    stream.write_all(busy.as_bytes()).await?;
    stream.shutdown().await?;
    let mut buf = [0u8; 1024];
    while stream.read(&mut buf).await? > 0 {}
    Ok(())
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
