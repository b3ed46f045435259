//! On PostgreSQL, the events that every replica records reach this replica's watchers through the
//! database: a transaction that appends an event also sends `NOTIFY kiln_events` (delivered when
//! it commits), and a thread of each replica, `LISTEN`ing on a connection of its own, reads the
//! events after the newest it announced and announces them in order. The database stays the
//! source of the ids; this replica's own events come the same way, so every replica's channel
//! carries every job's events in the order of their ids.
//!
//! Ids are in commit order because every transaction that appends an event holds one advisory
//! lock from its first event to its commit (see [`super::events::append`]): an event with a
//! smaller id can never commit after one with a larger id has been read. The thread also reads
//! once a second without a notification, and catches up from its last id after a reconnect (a
//! database restart), so a notification lost on the way delays events but never loses them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use tokio::sync::broadcast;

use super::Result;
use super::events::{CHANNEL, DELETED, recorded};
use crate::jobs::JobId;
use crate::jobs::events::{Announcer, Notice, PAGE};

/// How long the thread waits for a notification before it reads anyway.
const WAKE_EVERY: Duration = Duration::from_secs(1);

/// The listening thread; told to stop when dropped (it does within [`WAKE_EVERY`], or once it
/// gives up on a connection; nobody waits for it).
pub(super) struct Feed {
    /// The id of the newest event announced, held while announcing.
    last: Arc<Mutex<i64>>,
    stop: Arc<AtomicBool>,
}

impl Feed {
    /// Starts listening on the server at `url`, announcing on `announcer` every event after
    /// `newest`.
    pub(super) fn start(url: &str, announcer: Announcer, newest: i64) -> Result<Self> {
        let mut config: postgres::Config = url.parse()?;
        // A connection that went dead without a word (a network cut) is noticed within about
        // half a minute, not after the kernel's two hours: the listener then connects again.
        config
            .connect_timeout(Duration::from_secs(10))
            .application_name("kiln-events")
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(30));
        let (last, stop) = (Arc::new(Mutex::new(newest)), Arc::new(AtomicBool::new(false)));
        let (feed_last, feed_stop) = (last.clone(), stop.clone());
        std::thread::Builder::new()
            .name("kiln-events".into())
            .spawn(move || listen(&config, &announcer, &feed_last, &feed_stop))
            .expect("spawning the events thread");
        Ok(Self { last, stop })
    }

    /// A receiver of every event announced from now on, and the id of the newest event before
    /// them, taken together: the receiver gets every event after that id.
    pub(super) fn subscribe(&self, announcer: &Announcer) -> (broadcast::Receiver<Notice>, i64) {
        let last = crate::blocking::lock(&self.last);
        (announcer.subscribe(), *last)
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Connects, listens and announces until `stop`; connects again after any failure.
fn listen(config: &postgres::Config, announcer: &Announcer, last: &Mutex<i64>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let mut client = match config.connect(NoTls) {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "the events listener cannot reach the database; trying again");
                std::thread::sleep(WAKE_EVERY);
                continue;
            }
        };
        if let Err(e) = serve(&mut client, announcer, last, stop) {
            tracing::warn!(error = %e, "the events listener lost the database; reconnecting");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Listens on `client` and announces what is new after each notification (and every
/// [`WAKE_EVERY`]), until `stop` or a failure.
fn serve(client: &mut Client, announcer: &Announcer, last: &Mutex<i64>, stop: &AtomicBool) -> Result<()> {
    client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
    catch_up(client, announcer, last)?;
    while !stop.load(Ordering::SeqCst) {
        let mut deleted = Vec::new();
        {
            let mut notifications = client.notifications();
            let first = notifications.timeout_iter(WAKE_EVERY).next()?;
            let rest: Vec<_> = notifications.iter().collect()?;
            for notification in first.into_iter().chain(rest) {
                if let Some(job) = notification.payload().strip_prefix(DELETED) {
                    deleted.extend(JobId::parse_str(job).ok());
                }
            }
        }
        catch_up(client, announcer, last)?;
        for job in deleted {
            announcer.deleted(job);
        }
    }
    Ok(())
}

/// Reads and announces, in order, every event after the last one announced. Only this thread
/// moves `last`: it is read, the query runs without it held (so a slow query never holds up a
/// watcher subscribing), and it is held again to announce and move it.
fn catch_up(client: &mut Client, announcer: &Announcer, last: &Mutex<i64>) -> Result<()> {
    loop {
        let after = *crate::blocking::lock(last);
        let rows = client.query(
            "SELECT seq, job_id, kind, data FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&after, &(PAGE as i64)],
        )?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            events.push(recorded(row.get(0), row.get(1), row.get(2), row.get(3))?);
        }
        let full = events.len() == PAGE;
        let mut announced = crate::blocking::lock(last);
        if let Some(newest) = events.last() {
            *announced = newest.id;
        }
        announcer.announce(events);
        drop(announced);
        if !full {
            return Ok(());
        }
    }
}
