//! Tests `WaitForWorkers`: immediate replies, blocking until enough matching
//! workers register, both kinds of timeout, and the end of waits on stop.

mod api_common;

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use api_common::{
    call_option, capabilities, list_first_page, master_client, register, register_with, rpc_status,
    start_default, CALL_TIMEOUT,
};
use grpc_coordinator::proto::master::{GpuFilter, WaitForWorkersRequest, WaitForWorkersResponse};
use grpcio::{CallOption, RpcStatusCode};
use protobuf::EnumOrUnknown;

/// How long a wait must stay pending to count as blocked.
const STILL_PENDING: Duration = Duration::from_millis(300);

fn gpu_wait(min_workers: u32) -> WaitForWorkersRequest {
    WaitForWorkersRequest {
        min_workers,
        gpu: EnumOrUnknown::new(GpuFilter::GPU_ONLY),
        ..Default::default()
    }
}

/// Runs `request` on its own client and thread, and returns the receiver
/// of its result once the client has connected.
fn spawn_wait(
    address: SocketAddr,
    request: WaitForWorkersRequest,
    option: CallOption,
) -> Receiver<grpcio::Result<WaitForWorkersResponse>> {
    let (connected_sender, connected) = mpsc::channel();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let client = master_client(address);
        list_first_page(&client);
        let _ = connected_sender.send(());
        let _ = sender.send(client.wait_for_workers_opt(&request, option));
    });
    connected
        .recv_timeout(CALL_TIMEOUT)
        .expect("the wait's client connects");
    receiver
}

#[track_caller]
fn assert_pending(receiver: &Receiver<grpcio::Result<WaitForWorkersResponse>>) {
    match receiver.recv_timeout(STILL_PENDING) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("the wait should still be pending, got {other:?}"),
    }
}

#[test]
fn zero_min_returns_at_once() {
    let (_coordinator, address) = start_default();
    let client = master_client(address);
    register(&client, "w1");

    let started = Instant::now();
    let reply = client
        .wait_for_workers_opt(&WaitForWorkersRequest::default(), call_option())
        .expect("WaitForWorkers succeeds");

    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(reply.worker_ids, ["w1"]);
    assert_eq!(reply.membership_version, 1);
}

#[test]
fn wait_blocks_until_third_gpu() {
    let (_coordinator, address) = start_default();
    let client = master_client(address);
    register_with(&client, "gpu-1", capabilities("cuda", true, &[]));
    register(&client, "cpu-1");

    let reply = spawn_wait(address, gpu_wait(3), call_option());
    assert_pending(&reply);
    register(&client, "cpu-2");
    register(&client, "cpu-3");
    register_with(&client, "gpu-2", capabilities("cuda", true, &[]));
    assert_pending(&reply);
    register_with(&client, "gpu-3", capabilities("rocm", true, &[]));

    let reply = reply
        .recv_timeout(CALL_TIMEOUT)
        .expect("the wait replies")
        .expect("WaitForWorkers succeeds");
    assert_eq!(reply.worker_ids, ["gpu-1", "gpu-2", "gpu-3"]);
    assert_eq!(reply.membership_version, 6);
}

#[test]
fn server_timeout_names_count() {
    let (_coordinator, address) = start_default();
    let client = master_client(address);
    register_with(&client, "gpu-1", capabilities("cuda", true, &[]));
    register(&client, "cpu-1");

    let started = Instant::now();
    let error = client
        .wait_for_workers_opt(
            &WaitForWorkersRequest {
                timeout_ms: 300,
                ..gpu_wait(3)
            },
            call_option(),
        )
        .expect_err("the wait times out");
    let elapsed = started.elapsed();

    let status = rpc_status(error);
    assert_eq!(status.code(), RpcStatusCode::DEADLINE_EXCEEDED);
    assert!(
        status.message().contains("1 of 3"),
        "message: {}",
        status.message()
    );
    assert!(
        elapsed >= Duration::from_millis(300),
        "replied after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "replied after {elapsed:?}"
    );
}

#[test]
fn call_deadline_ends_wait() {
    let (_coordinator, address) = start_default();
    let client = master_client(address);
    register_with(&client, "gpu-1", capabilities("cuda", true, &[]));

    let started = Instant::now();
    let error = client
        .wait_for_workers_opt(
            &gpu_wait(3),
            CallOption::default().timeout(Duration::from_millis(300)),
        )
        .expect_err("the wait times out");
    let elapsed = started.elapsed();

    assert_eq!(rpc_status(error).code(), RpcStatusCode::DEADLINE_EXCEEDED);
    assert!(
        elapsed >= Duration::from_millis(300),
        "replied after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "replied after {elapsed:?}"
    );
}

#[test]
fn stop_ends_wait_unavailable() {
    let (mut coordinator, address) = start_default();

    let reply = spawn_wait(address, gpu_wait(3), call_option());
    assert_pending(&reply);
    coordinator.stop();

    let error = reply
        .recv_timeout(Duration::from_secs(2))
        .expect("the wait replies within 2 s of the stop")
        .expect_err("the wait fails");
    let status = rpc_status(error);
    assert_eq!(
        status.code(),
        RpcStatusCode::UNAVAILABLE,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("stopping"),
        "message: {}",
        status.message()
    );
}
