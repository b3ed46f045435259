//! A reader of Server-Sent Events (the `text/event-stream` format of the WHATWG HTML standard),
//! fed the bytes of a response as they arrive: what `kiln submit --follow` and the tests read
//! `/jobs/{id}/events` with.

/// One event of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// Its `id` field (empty when it has none).
    pub id: String,
    /// Its `event` field (`message` when it has none).
    pub event: String,
    /// Its `data` lines, joined by newlines.
    pub data: String,
}

/// Splits a byte stream into events. Lines may end in LF, CR LF or CR; comments (lines starting
/// with `:`, the server's keep-alives) and fields other than `id`, `event` and `data` are
/// skipped. A line is only read once its end has arrived, so chunks may split it anywhere.
#[derive(Debug, Default)]
pub struct SseReader {
    buffer: Vec<u8>,
    id: String,
    event: String,
    data: Vec<String>,
    /// The previous chunk ended in CR: an LF at the start of the next one belongs to it.
    after_cr: bool,
}

impl SseReader {
    /// Reads `chunk`; returns the events it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &byte in chunk {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            if byte == b'\n' || byte == b'\r' {
                self.after_cr = byte == b'\r';
                let line = String::from_utf8_lossy(&std::mem::take(&mut self.buffer)).into_owned();
                events.extend(self.line(&line));
            } else {
                self.buffer.push(byte);
            }
        }
        events
    }

    /// One complete line: a blank line ends the event being read.
    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let data = std::mem::take(&mut self.data);
            let event = std::mem::take(&mut self.event);
            if data.is_empty() {
                return None;
            }
            let event = if event.is_empty() { "message".to_string() } else { event };
            return Some(SseEvent { id: self.id.clone(), event, data: data.join("\n") });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            // The id persists to later events until another is sent.
            "id" => self.id = value.to_string(),
            "event" => self.event = value.to_string(),
            "data" => self.data.push(value.to_string()),
            _ => {}
        }
        None
    }

    /// The id of the last event read, to send as `Last-Event-ID` on reconnecting.
    pub fn last_id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, event: &str, data: &str) -> SseEvent {
        SseEvent { id: id.into(), event: event.into(), data: data.into() }
    }

    #[test]
    fn events_split_anywhere_are_read_whole_and_comments_skipped() {
        let stream = b": keep-alive\n\nid: 1\nevent: status\ndata: {\"status\":\"queued\"}\n\n\
                       id:2\r\nevent:step\r\ndata: a\r\ndata: b\r\n\r\ndata: bare\r\rretry: 5\n\n";
        let whole = SseReader::default().feed(stream);
        let expected = vec![
            event("1", "status", "{\"status\":\"queued\"}"),
            event("2", "step", "a\nb"),
            event("2", "message", "bare"),
        ];
        assert_eq!(whole, expected);
        for size in [1, 2, 3, 7] {
            let mut reader = SseReader::default();
            let read: Vec<_> = stream.chunks(size).flat_map(|c| reader.feed(c)).collect();
            assert_eq!(read, expected, "chunks of {size}");
            assert_eq!(reader.last_id(), "2");
        }
    }

    #[test]
    fn an_unfinished_event_is_not_given_out() {
        let mut reader = SseReader::default();
        assert!(reader.feed(b"id: 3\nevent: step\ndata: x\n").is_empty());
        assert_eq!(reader.feed(b"\n"), [event("3", "step", "x")]);
    }
}
