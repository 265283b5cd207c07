//! Tests `DeregisterWorker`: removal, incarnation checks and the membership version.

mod api_common;

use api_common::{deregister, list_first_page, master_client, register, rpc_status, start_default};
use grpc_coordinator::proto::master_grpc::MasterServiceClient;
use grpcio::RpcStatusCode;

fn listed_ids(client: &MasterServiceClient) -> Vec<String> {
    list_first_page(client)
        .workers
        .iter()
        .map(|worker| worker.worker_id.clone())
        .collect()
}

#[test]
fn deregister_removes_worker() {
    let (coordinator, address) = start_default();
    let client = master_client(address);
    let incarnation = register(&client, "w1").incarnation;
    register(&client, "w2");

    let reply = deregister(&client, "w1", incarnation).expect("DeregisterWorker succeeds");

    assert!(reply.removed);
    assert_eq!(listed_ids(&client), ["w2"]);
    let remaining: Vec<String> = coordinator
        .workers()
        .iter()
        .map(|worker| worker.id.to_string())
        .collect();
    assert_eq!(remaining, ["w2"]);
    assert_eq!(list_first_page(&client).total_count, 1);
}

#[test]
fn deregister_zero_removes_current() {
    let (coordinator, address) = start_default();
    let client = master_client(address);
    register(&client, "w1");
    register(&client, "w1");

    let reply = deregister(&client, "w1", 0).expect("DeregisterWorker succeeds");

    assert!(reply.removed);
    assert!(coordinator.workers().is_empty());
}

#[test]
fn deregister_stale_incarnation_ignored() {
    let (coordinator, address) = start_default();
    let client = master_client(address);
    let stale = register(&client, "w1").incarnation;
    let current = register(&client, "w1").incarnation;
    let version_before = list_first_page(&client).membership_version;

    let reply = deregister(&client, "w1", stale).expect("DeregisterWorker succeeds");

    assert!(!reply.removed);
    let workers = coordinator.workers();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].incarnation, current);
    assert_eq!(list_first_page(&client).membership_version, version_before);
}

#[test]
fn deregister_unknown_id_not_removed() {
    let (coordinator, address) = start_default();
    let client = master_client(address);
    register(&client, "w1");
    let version_before = list_first_page(&client).membership_version;

    let reply = deregister(&client, "nobody", 0).expect("DeregisterWorker succeeds");

    assert!(!reply.removed);
    assert_eq!(coordinator.workers().len(), 1);
    assert_eq!(list_first_page(&client).membership_version, version_before);
}

#[test]
fn deregister_empty_id_rejected() {
    let (_coordinator, address) = start_default();
    let client = master_client(address);

    let status = rpc_status(deregister(&client, "", 0).expect_err("an empty id is rejected"));

    assert_eq!(status.code(), RpcStatusCode::INVALID_ARGUMENT);
    assert!(
        status.message().contains("worker_id"),
        "message does not name the field: {}",
        status.message()
    );
}

#[test]
fn deregister_increments_version() {
    let (_coordinator, address) = start_default();
    let client = master_client(address);
    register(&client, "w1");
    register(&client, "w2");
    let version_before = list_first_page(&client).membership_version;
    assert_eq!(version_before, 2, "one version per join");

    assert!(deregister(&client, "w1", 0).unwrap().removed);
    assert_eq!(
        list_first_page(&client).membership_version,
        version_before + 1
    );
    assert!(deregister(&client, "w2", 0).unwrap().removed);
    assert_eq!(
        list_first_page(&client).membership_version,
        version_before + 2
    );
}
