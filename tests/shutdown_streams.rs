//! Tests that `Coordinator::stop` ends open watches and pending waits at
//! once with UNAVAILABLE, without waiting for the monitor's next tick.

mod api_common;

use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};

use api_common::{
    call_option, list_first_page, master_client, next_item, read_snapshot, register, rpc_status,
    start, test_config, watch, CALL_TIMEOUT,
};
use grpc_coordinator::proto::master::WaitForWorkersRequest;
use grpc_coordinator::Config;
use grpcio::{RpcStatus, RpcStatusCode};

const WATCHES: usize = 4;
const WAITS: usize = 4;

#[track_caller]
fn assert_stopping(status: &RpcStatus, call: &str) {
    assert_eq!(
        status.code(),
        RpcStatusCode::UNAVAILABLE,
        "{call}: {}",
        status.message()
    );
    assert!(
        status.message().contains("stopping"),
        "{call}: {}",
        status.message()
    );
}

#[test]
fn stop_ends_watches_and_waits() {
    let (mut coordinator, address) = start(Config {
        monitor_interval: Duration::from_secs(30),
        ..test_config()
    });
    let client = master_client(address);
    register(&client, "w1");
    register(&client, "w2");

    // Each watch keeps its client: a client from `master_client` owns its
    // environment, and dropping it shuts down the queue its streams run on.
    let mut watches: Vec<_> = (0..WATCHES)
        .map(|_| {
            let client = master_client(address);
            let mut stream = watch(&client, CALL_TIMEOUT);
            let (snapshot, _) = read_snapshot(&mut stream);
            assert_eq!(snapshot.len(), 2);
            (client, stream)
        })
        .collect();

    // Each wait thread connects with a ListWorkers call first, so its wait
    // reaches the server well within the 300 ms before the stop.
    let (connected_sender, connected) = mpsc::channel();
    let (sender, replies) = mpsc::channel();
    for index in 0..WAITS {
        let connected_sender = connected_sender.clone();
        let sender = sender.clone();
        std::thread::spawn(move || {
            let client = master_client(address);
            list_first_page(&client);
            let _ = connected_sender.send(());
            let request = WaitForWorkersRequest {
                min_workers: 10,
                ..Default::default()
            };
            let reply = client.wait_for_workers_opt(&request, call_option());
            let _ = sender.send((index, reply));
        });
    }
    drop(sender);
    for _ in 0..WAITS {
        connected
            .recv_timeout(CALL_TIMEOUT)
            .expect("every wait thread connects");
    }
    std::thread::sleep(Duration::from_millis(300));
    match replies.try_recv() {
        Err(TryRecvError::Empty) => {}
        other => panic!("every wait should still be pending, got {other:?}"),
    }

    let started = Instant::now();
    coordinator.stop();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "stop took {elapsed:?}");

    for (index, (_, stream)) in watches.iter_mut().enumerate() {
        let status = match next_item(stream) {
            Some(Err(error)) => rpc_status(error),
            Some(Ok(event)) => panic!("watch {index}: unexpected event {event}"),
            None => panic!("watch {index} ended without a status"),
        };
        assert_stopping(&status, &format!("watch {index}"));
    }
    for _ in 0..WAITS {
        let (index, reply) = replies
            .recv_timeout(Duration::from_secs(2))
            .expect("every wait replies within 2 s of the stop");
        let status = rpc_status(reply.expect_err("the wait fails"));
        assert_stopping(&status, &format!("wait {index}"));
    }
}
