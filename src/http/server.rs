//! The connection loop: accepts TCP connections up to a cap, overall and per client address,
//! and serves each with hyper's HTTP/1 under timeouts, until shutdown; then drains what is open.
//!
//! `axum::serve` has no timeouts and no connection cap, so a client that opens connections and
//! sends nothing (or half a request), or sends requests and never reads the answers, holds a
//! file descriptor forever; enough of them and every other client, `/readyz` included, is
//! refused. Here:
//! - a connection has `--idle-timeout-secs` to send each request's head, counted from when the
//!   server starts waiting for it, so both slow headers and idle keep-alive connections close;
//! - bodies have `--body-timeout-secs` per read (the router's `RequestBodyTimeoutLayer`);
//! - an answer that makes no progress for `--write-timeout-secs` (its client does not read)
//!   closes the connection ([`super::wire`]);
//! - a connection serves at most `--max-requests-per-connection` requests: the last answer says
//!   `connection: close`. hyper reads a connection's pipelined requests one at a time, each
//!   only once the previous answer is written, so unread requests wait in the kernel's socket
//!   buffer, not in kiln's memory;
//! - past `--max-connections` open connections, or `--max-connections-per-ip` from one client
//!   address, a new one is answered 503 (problem+json, with `Retry-After`) and closed at once,
//!   before it can hold anything. Those refusals are bounded too: past as many in flight as the
//!   cap, a connection is closed unanswered.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::Problem;
use super::wire::{Wire, raw_problem};

/// How the loop treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub max_requests_per_connection: u32,
    /// How long open requests may take to finish once shutdown begins.
    pub drain_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then waits up to the drain timeout for
/// open connections to finish their requests.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Slots::new(limits);
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.idle_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match slots.take(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                slots.refuse(stream, refusal);
                continue;
            }
        };
        let service = Counted::new(app.clone(), limits.max_requests_per_connection);
        let io = TokioIo::new(Wire::new(stream, limits.write_timeout));
        let connection = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still open after {:?}; closing them", limits.drain_timeout);
    }
}

/// `app` for one connection: the answer to its `max`-th request says `connection: close`, so
/// hyper closes the connection once it is written.
struct Counted {
    app: TowerToHyperService<Router>,
    served: AtomicU32,
    max: u32,
}

impl Counted {
    fn new(app: Router, max: u32) -> Self {
        Self { app: TowerToHyperService::new(app), served: AtomicU32::new(0), max }
    }
}

impl Service<Request<Incoming>> for Counted {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let last = self.served.fetch_add(1, Ordering::Relaxed) + 1 >= self.max;
        let answer = self.app.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            if last {
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        })
    }
}

/// Why a connection is refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// Every one of `--max-connections` is taken.
    Full,
    /// This client address holds `--max-connections-per-ip`.
    PerAddress,
}

/// The connection slots: a cap over all, one per client address, and one on refusals in flight.
struct Slots {
    all: Arc<Semaphore>,
    per_ip: usize,
    by_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    refusals: Arc<Semaphore>,
    log: RefusalLog,
}

/// Refusals are expected under load, so they are a WARN, and at most one line every ten
/// seconds: a client that opens connections in a loop cannot flood the log.
#[derive(Default)]
struct RefusalLog {
    /// When the last line was written, and the refusals since.
    last: Mutex<Option<(std::time::Instant, u64)>>,
}

impl RefusalLog {
    fn refused(&self, why: Refusal) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.as_mut() {
            Some((at, since)) if at.elapsed() < Duration::from_secs(10) => *since += 1,
            _ => {
                let earlier = last.map_or(0, |(_, since)| since);
                tracing::warn!(
                    ?why,
                    earlier,
                    "refusing a connection over the cap (and `earlier` since the last such line)"
                );
                *last = Some((std::time::Instant::now(), 0));
            }
        }
    }
}

/// One open connection's hold on its slots; dropping it gives them back.
struct Slot {
    _all: OwnedSemaphorePermit,
    ip: IpAddr,
    by_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Slots {
    fn new(limits: ConnectionLimits) -> Self {
        Self {
            all: Arc::new(Semaphore::new(limits.max_connections)),
            per_ip: limits.max_connections_per_ip.max(1),
            by_ip: Arc::default(),
            refusals: Arc::new(Semaphore::new(limits.max_connections)),
            log: RefusalLog::default(),
        }
    }

    /// A slot for a connection from `ip`, unless that address or the server is at its cap.
    fn take(&self, ip: IpAddr) -> Result<Slot, Refusal> {
        // An IPv4 client of a dual-stack socket arrives as ::ffff:a.b.c.d: one address either way.
        let ip = ip.to_canonical();
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        let held = by_ip.entry(ip).or_insert(0);
        if *held >= self.per_ip {
            return Err(Refusal::PerAddress);
        }
        let all = self.all.clone().try_acquire_owned().map_err(|_| Refusal::Full)?;
        *held += 1;
        Ok(Slot { _all: all, ip, by_ip: self.by_ip.clone() })
    }

    /// Answers `stream` 503 and closes it, or closes it unanswered when as many refusals as the
    /// cap are already being written.
    fn refuse(&self, stream: TcpStream, why: Refusal) {
        let Ok(permit) = self.refusals.clone().try_acquire_owned() else {
            tracing::debug!("closing a connection unanswered: too many refusals in flight");
            return;
        };
        self.log.refused(why);
        tokio::spawn(async move {
            refuse(stream, why).await;
            drop(permit);
        });
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = by_ip.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// Answers a connection over a cap with 503 and closes it.
async fn refuse(mut stream: TcpStream, why: Refusal) {
    let (kind, detail) = match why {
        Refusal::Full => {
            ("too_many_connections", "every connection slot is taken (--max-connections); retry shortly")
        }
        Refusal::PerAddress => (
            "too_many_connections_from_address",
            "this client address holds as many connections as one address may (--max-connections-per-ip); \
             close one or retry shortly",
        ),
    };
    let title = "The server has too many open connections";
    let problem = Problem { kind, title, status: 503, detail: detail.to_string(), errors: vec![] };
    let answer = raw_problem(problem, "retry-after: 1\r\n");
    let write = async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
}
