//! Fan-out of membership events to watchers through bounded channels.
//!
//! Publishing never blocks: each watcher has a channel of `WATCH_BUFFER`
//! events, and a watcher whose channel is full is cut off instead of slowing
//! the registration that produced the event.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use futures::channel::{mpsc, oneshot};

use crate::events::MembershipEvent;

/// Number of events a watcher may fall behind before it is cut off.
pub const WATCH_BUFFER: usize = 4096;

/// Reason a watch ended on the server side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEnd {
    /// Still open, or closed by the client.
    Open,
    /// The watcher fell more than `WATCH_BUFFER` events behind.
    FellBehind,
    /// The coordinator is stopping.
    Stopping,
}

impl WatchEnd {
    fn from_u8(value: u8) -> WatchEnd {
        match value {
            1 => WatchEnd::FellBehind,
            2 => WatchEnd::Stopping,
            _ => WatchEnd::Open,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            WatchEnd::Open => 0,
            WatchEnd::FellBehind => 1,
            WatchEnd::Stopping => 2,
        }
    }
}

/// Read side of a watch: the live events and, once they end, the reason.
pub struct Subscription {
    pub events: mpsc::Receiver<Arc<MembershipEvent>>,
    /// Resolves as soon as the hub drops the watcher, even while events are
    /// still buffered, so a stalled stream can be ended at once.
    pub dropped: oneshot::Receiver<()>,
    end: Arc<AtomicU8>,
}

impl Subscription {
    /// Returns why the event channel ended.
    pub fn end(&self) -> WatchEnd {
        WatchEnd::from_u8(self.end.load(Ordering::Acquire))
    }
}

struct Watcher {
    sender: mpsc::Sender<Arc<MembershipEvent>>,
    end: Arc<AtomicU8>,
    /// Dropped with the watcher, which resolves `Subscription::dropped`.
    _drop_signal: oneshot::Sender<()>,
}

/// The set of open watchers.
#[derive(Default)]
pub struct WatchHub {
    watchers: Vec<Watcher>,
}

impl WatchHub {
    /// Adds a watcher and returns its read side.
    pub fn subscribe(&mut self) -> Subscription {
        // A futures channel stores `buffer + 1` messages with one sender.
        let (sender, events) = mpsc::channel(WATCH_BUFFER - 1);
        let end = Arc::new(AtomicU8::new(WatchEnd::Open.to_u8()));
        let (drop_signal, dropped) = oneshot::channel();
        self.watchers.push(Watcher {
            sender,
            end: end.clone(),
            _drop_signal: drop_signal,
        });
        Subscription {
            events,
            dropped,
            end,
        }
    }

    /// Returns the number of watchers, including any whose client left
    /// since the last publish.
    pub fn len(&self) -> usize {
        self.watchers.len()
    }

    /// Returns whether no watcher is open.
    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }

    /// Sends `event` to every watcher, cutting off those that fell behind
    /// and dropping those whose client went away. Returns how many were cut off.
    pub fn publish(&mut self, event: &Arc<MembershipEvent>) -> usize {
        let mut cut_off = 0;
        self.watchers
            .retain_mut(|watcher| match watcher.sender.try_send(event.clone()) {
                Ok(()) => true,
                Err(error) if error.is_full() => {
                    watcher
                        .end
                        .store(WatchEnd::FellBehind.to_u8(), Ordering::Release);
                    cut_off += 1;
                    false
                }
                Err(_) => false,
            });
        cut_off
    }

    /// Ends every watch because the coordinator is stopping. Returns how
    /// many were still read by a client.
    pub fn close_all(&mut self) -> usize {
        let mut open = 0;
        for watcher in self.watchers.drain(..) {
            if !watcher.sender.is_closed() {
                open += 1;
            }
            watcher
                .end
                .store(WatchEnd::Stopping.to_u8(), Ordering::Release);
        }
        open
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use futures::StreamExt;

    use super::*;
    use crate::events::ChangeKind;
    use crate::registry::WorkerRecord;
    use crate::worker::Capabilities;

    fn event(version: u64) -> Arc<MembershipEvent> {
        let now = Instant::now();
        Arc::new(MembershipEvent {
            kind: ChangeKind::Joined,
            record: WorkerRecord {
                id: Arc::from("w"),
                host: String::new(),
                port: 0,
                capabilities: Capabilities::default(),
                incarnation: 1,
                registered_at: now,
                registered_at_unix_ms: 0,
                last_heartbeat: now,
                last_status: None,
            },
            membership_version: version,
        })
    }

    #[test]
    fn subscriber_receives_in_order() {
        let mut hub = WatchHub::default();
        let mut subscription = hub.subscribe();
        for version in 1..=3 {
            assert_eq!(hub.publish(&event(version)), 0);
        }
        drop(hub);

        let versions: Vec<u64> =
            futures::executor::block_on(subscription.events.by_ref().collect::<Vec<_>>())
                .iter()
                .map(|event| event.membership_version)
                .collect();
        assert_eq!(versions, [1, 2, 3]);
        assert_eq!(subscription.end(), WatchEnd::Open);
    }

    #[test]
    fn slow_watcher_cut_off_after_buffer() {
        let mut hub = WatchHub::default();
        let subscription = hub.subscribe();
        for version in 0..WATCH_BUFFER as u64 {
            assert_eq!(hub.publish(&event(version)), 0, "event {version} fits");
        }

        assert_eq!(hub.publish(&event(WATCH_BUFFER as u64)), 1);
        assert!(hub.is_empty());
        assert_eq!(subscription.end(), WatchEnd::FellBehind);
    }

    #[test]
    fn dropped_subscriber_is_removed() {
        let mut hub = WatchHub::default();
        drop(hub.subscribe());
        assert_eq!(hub.publish(&event(1)), 0);
        assert!(hub.is_empty());
    }

    #[test]
    fn close_all_marks_stopping() {
        let mut hub = WatchHub::default();
        let subscription = hub.subscribe();
        drop(hub.subscribe());
        assert_eq!(hub.close_all(), 1);
        assert!(hub.is_empty());
        assert_eq!(subscription.end(), WatchEnd::Stopping);
    }
}
