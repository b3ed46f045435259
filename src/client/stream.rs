//! An event stream that reopens itself: reads the Server-Sent Events of one route and, when the
//! connection drops, connects again with `Last-Event-ID`, so nothing is lost or read twice.
//! `kiln submit --follow` reads `/jobs/{id}/events` with it, `kiln jobs --watch` `/events`.
//!
//! A drop is a connection that fails or breaks (and, for a stream that never ends by design, one
//! the server ends). After one, the next connection waits a second; more than [`RECONNECTS`]
//! drops in a row, with nothing read in between, end the stream with an error. A server that
//! refuses the request (a problem answer) ends it at once.

use std::collections::VecDeque;
use std::time::Duration;

use reqwest::{Method, Response};

use super::sse::{SseEvent, SseReader};
use super::{Client, ClientError};

/// How many drops in a row are reconnected before giving up.
pub const RECONNECTS: u32 = 5;

/// What [`EventStream::next`] gives.
#[derive(Debug)]
pub enum Item {
    Event(SseEvent),
    /// The connection dropped (why, in words); the next call reconnects.
    Dropped(String),
    /// The server ended the stream (for a stream that may end).
    Ended,
}

/// The events of one route, across connections.
pub struct EventStream<'a> {
    client: &'a Client,
    path: String,
    /// The stream in errors: `job <id>`, `every job`.
    what: String,
    reader: SseReader,
    response: Option<Response>,
    ready: VecDeque<SseEvent>,
    /// Drops since something was last read.
    failures: u32,
    /// Whether the server ending the stream is a drop, to reconnect after, rather than its end.
    endless: bool,
}

impl<'a> EventStream<'a> {
    /// The stream at `path` (from the server's root), named `what` in errors; nothing is sent
    /// until [`EventStream::connect`] or [`EventStream::next`].
    pub fn new(client: &'a Client, path: &str, what: &str) -> Self {
        Self {
            client,
            path: path.to_string(),
            what: what.to_string(),
            reader: SseReader::default(),
            response: None,
            ready: VecDeque::new(),
            failures: 0,
            endless: false,
        }
    }

    /// Makes a stream whose end is a drop: the server only ends it when it stops.
    pub fn endless(mut self) -> Self {
        self.endless = true;
        self
    }

    /// Opens a connection now, with `Last-Event-ID` once an event was read.
    pub async fn connect(&mut self) -> Result<(), ClientError> {
        // A connection after a drop (counted until an event arrives) waits first.
        if self.failures > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut request = self.client.request(Method::GET, &self.path);
        if !self.reader.last_id().is_empty() {
            request = request.header("Last-Event-ID", self.reader.last_id());
        }
        self.response = Some(self.client.send(request).await?);
        Ok(())
    }

    /// The next event, a drop, or the end; connects first if no connection is open.
    pub async fn next(&mut self) -> Result<Item, ClientError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Item::Event(event));
            }
            let Some(response) = self.response.as_mut() else {
                match self.connect().await {
                    Ok(()) => continue,
                    Err(ClientError::Unreachable { source, .. }) => return self.dropped(source.to_string()),
                    Err(refused) => return Err(refused),
                }
            };
            let chunk = response.chunk().await;
            match chunk {
                Ok(Some(chunk)) => {
                    self.failures = 0;
                    self.ready.extend(self.reader.feed(&chunk));
                }
                Ok(None) if !self.endless => {
                    self.response = None;
                    return Ok(Item::Ended);
                }
                Ok(None) => return self.dropped("the server ended the stream".to_string()),
                Err(e) => return self.dropped(e.to_string()),
            }
        }
    }

    /// Counts a drop: an error past [`RECONNECTS`] in a row, else [`Item::Dropped`].
    fn dropped(&mut self, why: String) -> Result<Item, ClientError> {
        self.response = None;
        self.failures += 1;
        if self.failures > RECONNECTS {
            return Err(ClientError::Other(format!("lost the stream of {}: {why}", self.what)));
        }
        Ok(Item::Dropped(why))
    }
}
