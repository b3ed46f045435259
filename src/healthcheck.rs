//! `kiln healthcheck`: asks a running kiln whether it is ready, for container health checks
//! (a Docker `HEALTHCHECK` needs no curl in the image).
//!
//! It sends one `GET /readyz` over plain HTTP/1.1 and succeeds on a 200; anything else — no
//! answer within the timeout, a refused connection, a 503 while shutting down — is an error that
//! says what happened.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// What to check.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// The server's address; `0.0.0.0` and `::` (listen on every interface) mean this machine.
    #[arg(long, env = "KILN_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout_secs: u64,
}

/// Succeeds when the server at `args.bind` answers `GET /readyz` with 200.
pub fn run(args: &HealthcheckArgs) -> Result<(), String> {
    let mut addr = args.bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| format!("asking {addr}: {e}"))?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(|e| format!("reading the answer of {addr}: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => Err(format!("{addr} is not ready: HTTP {code}")),
        None => Err(format!("{addr} answered something that is not HTTP: {status_line:?}")),
    }
}
