//! `WatchWorkers` and `WaitForWorkers`: calls that outlive their handler.
//!
//! Both run as futures on the completion-queue thread that accepted the
//! call, so an open watch or wait occupies no thread of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use futures::future::{poll_fn, select, Either};
use futures::{Sink, SinkExt, StreamExt};
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, ServerStreamingSink, UnarySink, WriteFlags};

use crate::codec::Decoded;
use crate::convert::{event_to_proto, filter_from_proto, snapshot_event, synced_event};
use crate::in_flight::CallGuard;
use crate::membership::{Membership, WatchStart};
use crate::proto::master as pb;
use crate::registry::WorkerRecord;
use crate::service::{log_rejection, malformed, spawn_reply, status_for};
use crate::wait::{WaitOutcome, WaitSpec};
use crate::watch::{Subscription, WatchEnd, WATCH_BUFFER};

/// Opens a watch and streams its snapshot and live events.
pub fn watch_workers(
    membership: &Membership,
    ctx: RpcContext<'_>,
    request: Decoded<pb::WatchWorkersRequest>,
    sink: ServerStreamingSink<pb::WorkerEvent>,
    guard: CallGuard,
) {
    let start = match request.0 {
        Err(error) => Err(malformed::<pb::WatchWorkersRequest>(&error)),
        Ok(_) => membership.watch().map_err(|error| status_for(&error)),
    };
    match start {
        Ok(start) => {
            log::debug!(
                "watch opened by {} at version {}",
                ctx.peer(),
                start.membership_version
            );
            ctx.spawn(async move {
                stream_events(start, sink).await;
                drop(guard);
            });
        }
        Err(status) => {
            log_rejection(&ctx, &status);
            spawn_reply(&ctx, sink.fail(status), guard);
        }
    }
}

async fn stream_events(start: WatchStart, mut sink: ServerStreamingSink<pb::WorkerEvent>) {
    let WatchStart {
        snapshot,
        membership_version,
        mut subscription,
    } = start;

    match deliver(&mut sink, &snapshot, membership_version, &mut subscription).await {
        Ok(()) => {}
        Err(error) => {
            log::debug!("watch closed by the client: {error}");
            return;
        }
    }

    let status = match subscription.end() {
        WatchEnd::FellBehind => RpcStatus::with_message(
            RpcStatusCode::RESOURCE_EXHAUSTED,
            format!("watcher fell behind, watch again (more than {WATCH_BUFFER} events unread)"),
        ),
        WatchEnd::Stopping | WatchEnd::Open => RpcStatus::with_message(
            RpcStatusCode::UNAVAILABLE,
            "the coordinator is stopping; watch again once it serves".to_string(),
        ),
    };
    if let Err(error) = sink.fail(status).await {
        log::debug!("watch end status not delivered: {error}");
    }
}

/// Sends the snapshot, SYNCED, then live events until the hub drops the
/// watcher. Returns an error only when the client went away.
async fn deliver(
    sink: &mut ServerStreamingSink<pb::WorkerEvent>,
    snapshot: &[Arc<WorkerRecord>],
    membership_version: u64,
    subscription: &mut Subscription,
) -> grpcio::Result<()> {
    let now = Instant::now();
    let buffered = WriteFlags::default().buffer_hint(true);
    for record in snapshot {
        let item = (snapshot_event(record, membership_version, now), buffered);
        if !send_unless_dropped(sink, item, &mut subscription.dropped).await? {
            return Ok(());
        }
    }
    let synced = (synced_event(membership_version), WriteFlags::default());
    if !send_unless_dropped(sink, synced, &mut subscription.dropped).await? {
        return Ok(());
    }

    while subscription.end() == WatchEnd::Open {
        // Waiting for the next event also watches for the client going away,
        // so a cancelled watch ends at once rather than at the next change.
        let event = match select(subscription.events.next(), client_gone(sink)).await {
            Either::Left((Some(event), _)) => event,
            Either::Left((None, _)) => break,
            Either::Right((error, _)) => return Err(error),
        };
        let item = (
            event_to_proto(&event, Instant::now()),
            WriteFlags::default(),
        );
        if !send_unless_dropped(sink, item, &mut subscription.dropped).await? {
            break;
        }
    }
    Ok(())
}

/// Returns a future that resolves once the client cancels the call or the
/// connection closes; polling it sends nothing.
pub fn client_gone<T>(
    sink: &mut ServerStreamingSink<T>,
) -> impl Future<Output = grpcio::Error> + Unpin + '_ {
    // `poll_ready` first polls the call's completion, which registers the
    // waker for it, and fails with `RemoteStopped` once the call has ended.
    poll_fn(
        move |context| match Pin::new(&mut *sink).poll_ready(context) {
            Poll::Ready(Err(error)) => Poll::Ready(error),
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Pending,
        },
    )
}

/// Sends one item unless the watcher is dropped first. Returns `Ok(false)`
/// when it was dropped, so a stalled client cannot hold the stream open.
async fn send_unless_dropped(
    sink: &mut ServerStreamingSink<pb::WorkerEvent>,
    item: (pb::WorkerEvent, WriteFlags),
    dropped: &mut futures::channel::oneshot::Receiver<()>,
) -> grpcio::Result<bool> {
    match select(sink.send(item), dropped).await {
        Either::Left((result, _)) => result.map(|()| true),
        Either::Right(_) => Ok(false),
    }
}

/// Opens a wait and replies once enough workers are present, the wait times
/// out, or the coordinator stops.
pub fn wait_for_workers(
    membership: &Membership,
    ctx: RpcContext<'_>,
    request: Decoded<pb::WaitForWorkersRequest>,
    sink: UnarySink<pb::WaitForWorkersResponse>,
    guard: CallGuard,
) {
    let call_deadline = ctx.deadline();
    let opened = match request.0 {
        Err(error) => Err(malformed::<pb::WaitForWorkersRequest>(&error)),
        Ok(request) => filter_from_proto(request.device_type, request.gpu, request.supported_model)
            .and_then(|filter| {
                let timeout = Duration::from_millis(u64::from(request.timeout_ms));
                membership.wait(WaitSpec {
                    filter,
                    min_workers: request.min_workers as usize,
                    deadline: (!timeout.is_zero()).then(|| Instant::now() + timeout),
                    // NOTE: grpcio reports no cancellation for unary calls, so a
                    // wait its client cancelled without a deadline stays open
                    // until satisfied or the coordinator stops.
                    abandoned: Box::new(move || call_deadline.exceeded()),
                })
            })
            .map_err(|error| status_for(&error)),
    };
    let outcome = match opened {
        Ok(outcome) => outcome,
        Err(status) => {
            log_rejection(&ctx, &status);
            spawn_reply(&ctx, sink.fail(status), guard);
            return;
        }
    };

    ctx.spawn(async move {
        let sent = match outcome.await {
            Ok(WaitOutcome::Ready {
                worker_ids,
                membership_version,
            }) => {
                sink.success(pb::WaitForWorkersResponse {
                    worker_ids,
                    membership_version,
                    ..Default::default()
                })
                .await
            }
            Ok(WaitOutcome::TimedOut {
                present,
                min_workers,
            }) => {
                sink.fail(RpcStatus::with_message(
                    RpcStatusCode::DEADLINE_EXCEEDED,
                    format!(
                        "{present} of {min_workers} required matching workers were present when the wait timed out"
                    ),
                ))
                .await
            }
            Ok(WaitOutcome::Stopping) | Err(_) => {
                sink.fail(RpcStatus::with_message(
                    RpcStatusCode::UNAVAILABLE,
                    "the coordinator is stopping; wait again once it serves".to_string(),
                ))
                .await
            }
        };
        if let Err(error) = sent {
            log::debug!("wait reply not delivered: {error}");
        }
        drop(guard);
    });
}
