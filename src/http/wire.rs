//! What passes on one connection's socket, below hyper: a deadline on writes that make no
//! progress, and problem+json bodies for the errors hyper answers by itself.
//!
//! [`Wire`] wraps the accepted `TcpStream`:
//! - **Write deadline.** A write (or flush) that the socket cannot take — the client does not
//!   read, so its receive window and our send buffer are full — starts a timer; any progress
//!   stops it. Once a write has made no progress for `--write-timeout-secs`, the write fails with
//!   `TimedOut` and hyper closes the connection. A client that pipelines requests and never reads
//!   its answers therefore holds its connection slot for that long at most. An event stream that
//!   writes nothing between events is not writing, so the deadline never runs while its client
//!   keeps reading.
//! - **Bare errors.** hyper answers a request head it cannot parse itself, before any service
//!   sees it: 400 (a bad request line, `Content-Length: -1`, two different lengths,
//!   `Transfer-Encoding: gzip`), 431 (too many or too large headers), 414 (a URI too long). That
//!   answer is a status line and `content-length: 0`, no body. Every answer kiln's router gives
//!   for an error carries `content-type: application/problem+json` (`error::problems_only`), so
//!   an error head without a content type at the start of a write can only be hyper's own:
//!   [`Wire`] replaces it with the same status as problem+json before it reaches the socket.
//!   The wrapper says it cannot write vectored, so that hyper hands each answer's head to one
//!   `poll_write` whole.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::error::Problem;

/// A connection's socket with a write deadline and hyper's bare errors made problem+json.
pub struct Wire<S> {
    inner: S,
    write_timeout: Duration,
    /// Running while a write waits on the socket; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
    /// A replacement answer being written, how far, and how many bytes of hyper's it stands for.
    replacing: Option<Replacement>,
}

struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    stands_for: usize,
}

impl<S> Wire<S> {
    pub fn new(inner: S, write_timeout: Duration) -> Self {
        Self { inner, write_timeout, stalled: None, replacing: None }
    }
}

impl<S: AsyncWrite + Unpin> Wire<S> {
    /// What to answer for a write that returned `Pending`: still `Pending` while the deadline
    /// has not passed (the timer wakes this task when it does), then `TimedOut`.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.write_timeout;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing of the answer for longer than --write-timeout-secs",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes `buf` to the socket under the deadline.
    fn write_some(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.pending(cx),
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.stalled = None;
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }

    /// Writes what is left of a replacement answer; `Ready(Ok(n))` once all of it is out, `n`
    /// being the length of the answer it replaced.
    fn drain_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some(r) = self.replacing.as_mut() {
            if r.written == r.bytes.len() {
                let stands_for = r.stands_for;
                self.replacing = None;
                return Poll::Ready(Ok(stands_for));
            }
            let rest = r.bytes[r.written..].to_vec();
            let n = ready!(self.write_some(cx, &rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.replacing.as_mut().expect("a replacement in progress").written += n;
        }
        Poll::Ready(Ok(0))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Wire<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Wire<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none() {
            if let Some(status) = bare_error_status(buf) {
                let bytes = problem_answer(status);
                this.replacing = Some(Replacement { bytes, written: 0, stands_for: buf.len() });
            }
        }
        if this.replacing.is_some() {
            return this.drain_replacement(cx);
        }
        this.write_some(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain_replacement(cx))?;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.pending(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain_replacement(cx))?;
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.pending(cx),
            ready => ready,
        }
    }
}

/// The status of hyper's own error answer, when `buf` is one: an answer head with a 4xx status,
/// `content-length: 0`, no content type and nothing after the head.
fn bare_error_status(buf: &[u8]) -> Option<StatusCode> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ").or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let status = StatusCode::from_bytes(rest.get(..3)?).ok()?;
    if !status.is_client_error() {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let empty = head.contains("\r\ncontent-length: 0\r\n");
    (end == buf.len() && empty && !head.contains("\r\ncontent-type:")).then_some(status)
}

/// hyper's bare error answer for `status` made problem+json; the connection closes after it
/// (hyper closes it after a parse error).
fn problem_answer(status: StatusCode) -> Vec<u8> {
    let (kind, title, detail) = match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "request_header_fields_too_large",
            "The request's headers are too large",
            "the request has more than 100 headers, or more bytes of them than this server reads",
        ),
        StatusCode::URI_TOO_LONG => (
            "uri_too_long",
            "The request's URI is too long",
            "the request's URI is longer than this server reads",
        ),
        _ => (
            "bad_request",
            "The request is malformed",
            "the request's head is not valid HTTP/1.1: its request line, a header, or its \
             Content-Length or Transfer-Encoding",
        ),
    };
    raw_problem(
        Problem { kind, title, status: status.as_u16(), detail: detail.to_string(), errors: vec![] },
        "",
    )
}

/// A whole HTTP/1.1 answer carrying `problem`, with `extra` headers (each line ending in
/// `\r\n`), that closes the connection: for answers written straight to a socket, outside the
/// router.
pub fn raw_problem(problem: Problem, extra: &str) -> Vec<u8> {
    let body = serde_json::to_vec(&problem).expect("a problem serialises");
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\n\
         {extra}connection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bodiless_error_head_without_a_content_type_is_hyper_s_own() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(bare_error_status(bare), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(bare_error_status(ours), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(bare_error_status(ok), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nmore";
        assert_eq!(bare_error_status(with_body), None);
        assert_eq!(bare_error_status(b"HTTP/1.1 400 Bad"), None);
    }

    #[test]
    fn a_replacement_answer_is_problem_json_with_its_length() {
        let answer = String::from_utf8(problem_answer(StatusCode::URI_TOO_LONG)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 414);
    }
}
