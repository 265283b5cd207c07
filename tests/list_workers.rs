//! Tests `ListWorkers` paging and filters on a fleet of 25,000 workers,
//! and its rejection of bad page tokens and filter values.

mod api_common;

use std::collections::HashSet;

use api_common::{call_option, master_client, rpc_status, start_default, worker_spec};
use grpc_coordinator::proto::master::{GpuFilter, ListWorkersRequest, ListWorkersResponse};
use grpc_coordinator::proto::master_grpc::MasterServiceClient;
use grpc_coordinator::{Coordinator, WorkerSpec};
use grpcio::{RpcStatus, RpcStatusCode};
use protobuf::EnumOrUnknown;

const FLEET_SIZE: usize = 25_000;
const DEVICE_TYPES: [&str; 3] = ["cuda", "rocm", "cpu"];
const MODELS: [&str; 4] = ["resnet50", "bert", "gpt2", "vit"];

/// Returns the spec of fleet worker `index`. Ids are not zero-padded, so
/// their id order ("worker-10" before "worker-2") differs from the order of
/// registration.
fn fleet_spec(index: usize) -> WorkerSpec {
    let device_type = DEVICE_TYPES[index % DEVICE_TYPES.len()];
    let gpu_enabled = device_type != "cpu" && !index.is_multiple_of(7);
    let models: Vec<&str> = MODELS
        .iter()
        .enumerate()
        .filter(|(bit, _)| (index >> bit) & 1 == 1)
        .map(|(_, model)| *model)
        .collect();
    worker_spec(
        &format!("worker-{index}"),
        device_type,
        gpu_enabled,
        &models,
    )
}

/// Registers `count` fleet workers through the library and returns their specs.
fn register_fleet(coordinator: &Coordinator, count: usize) -> Vec<WorkerSpec> {
    let specs: Vec<WorkerSpec> = (0..count).map(fleet_spec).collect();
    for spec in &specs {
        coordinator
            .register_worker(spec.clone())
            .expect("fleet worker registers");
    }
    specs
}

fn filter(device_type: &str, gpu: GpuFilter, supported_model: &str) -> ListWorkersRequest {
    ListWorkersRequest {
        device_type: device_type.to_string(),
        gpu: EnumOrUnknown::new(gpu),
        supported_model: supported_model.to_string(),
        ..Default::default()
    }
}

/// Returns the ids of the specs that `request`'s filter selects, in id order.
fn expected_ids(specs: &[WorkerSpec], request: &ListWorkersRequest) -> Vec<String> {
    let gpu = request.gpu.enum_value().expect("known GPU filter");
    let mut ids: Vec<String> = specs
        .iter()
        .filter(|spec| {
            let capabilities = &spec.capabilities;
            let gpu_matches = match gpu {
                GpuFilter::ANY => true,
                GpuFilter::GPU_ONLY => capabilities.gpu_enabled,
                GpuFilter::CPU_ONLY => !capabilities.gpu_enabled,
            };
            (request.device_type.is_empty() || capabilities.device_type == request.device_type)
                && gpu_matches
                && (request.supported_model.is_empty()
                    || capabilities
                        .supported_models
                        .contains(&request.supported_model))
        })
        .map(|spec| spec.id.clone())
        .collect();
    ids.sort();
    ids
}

fn list(client: &MasterServiceClient, request: &ListWorkersRequest) -> ListWorkersResponse {
    client
        .list_workers_opt(request, call_option())
        .unwrap_or_else(|error| panic!("ListWorkers {request} failed: {error}"))
}

fn list_error(client: &MasterServiceClient, request: &ListWorkersRequest) -> RpcStatus {
    rpc_status(
        client
            .list_workers_opt(request, call_option())
            .expect_err("ListWorkers is rejected"),
    )
}

/// Pages through `request`'s filter with `page_size`, checking each page's
/// size, token and total count, and returns every id listed.
fn list_all(
    client: &MasterServiceClient,
    request: &ListWorkersRequest,
    page_size: u32,
    expected_total: usize,
) -> Vec<String> {
    let full_page = if page_size == 0 {
        1_000
    } else {
        page_size as usize
    };
    let max_pages = expected_total / full_page + 2;
    let mut ids = Vec::new();
    let mut token = String::new();
    for page_number in 0..max_pages {
        let page = list(
            client,
            &ListWorkersRequest {
                page_size,
                page_token: token,
                ..request.clone()
            },
        );
        assert_eq!(
            page.total_count, expected_total as u64,
            "total_count on page {page_number} of {request}"
        );
        ids.extend(page.workers.iter().map(|worker| worker.worker_id.clone()));
        if page.next_page_token.is_empty() {
            assert!(
                page.workers.len() <= full_page,
                "last page of {request} has {} workers",
                page.workers.len()
            );
            return ids;
        }
        assert_eq!(
            page.workers.len(),
            full_page,
            "page {page_number} of {request} is short but has a next_page_token"
        );
        token = page.next_page_token;
    }
    panic!("{request} still had a next_page_token after {max_pages} pages");
}

/// Fails with the first difference, since a full listing is too long to print.
#[track_caller]
fn assert_same_ids(listed: &[String], expected: &[String], context: &str) {
    if let Some(index) = (0..listed.len().min(expected.len())).find(|&i| listed[i] != expected[i]) {
        panic!(
            "{context}: position {index} lists {:?}, expected {:?}",
            listed[index], expected[index]
        );
    }
    assert_eq!(
        listed.len(),
        expected.len(),
        "{context}: number of ids listed"
    );
}

#[test]
fn paging_lists_each_once() {
    let (coordinator, address) = start_default();
    let specs = register_fleet(&coordinator, FLEET_SIZE);
    let client = master_client(address);
    let filters = [
        filter("", GpuFilter::ANY, ""),
        filter("rocm", GpuFilter::ANY, ""),
        filter("", GpuFilter::GPU_ONLY, ""),
        filter("", GpuFilter::CPU_ONLY, ""),
        filter("", GpuFilter::ANY, "bert"),
        filter("cuda", GpuFilter::GPU_ONLY, "vit"),
    ];

    for request in &filters {
        let expected = expected_ids(&specs, request);
        assert!(
            expected.len() > 1_000,
            "{request} selects only {} workers, too few to page",
            expected.len()
        );
        for page_size in [1_000, 0] {
            let listed = list_all(&client, request, page_size, expected.len());
            assert_same_ids(
                &listed,
                &expected,
                &format!("{request} with page_size {page_size}"),
            );
        }
    }
}

#[test]
fn paging_no_match_is_empty() {
    let (coordinator, address) = start_default();
    register_fleet(&coordinator, 100);
    let client = master_client(address);

    let page = list(&client, &filter("tpu", GpuFilter::ANY, ""));

    assert!(page.workers.is_empty());
    assert_eq!(page.total_count, 0);
    assert!(page.next_page_token.is_empty());
}

#[test]
fn page_size_capped_at_max() {
    let (coordinator, address) = start_default();
    register_fleet(&coordinator, FLEET_SIZE);
    let client = master_client(address);

    let page = list(
        &client,
        &ListWorkersRequest {
            page_size: 20_000,
            ..Default::default()
        },
    );

    assert_eq!(page.workers.len(), 10_000);
    assert!(!page.next_page_token.is_empty());
    assert_eq!(page.total_count, FLEET_SIZE as u64);
}

#[test]
fn paging_skips_join_before_cursor() {
    let (coordinator, address) = start_default();
    let specs = register_fleet(&coordinator, 30);
    let client = master_client(address);
    let first = list(
        &client,
        &ListWorkersRequest {
            page_size: 10,
            ..Default::default()
        },
    );
    assert_eq!(first.workers.len(), 10);
    let cursor = first.workers.last().unwrap().worker_id.clone();

    // "a-late" sorts before every fleet id and so before the cursor, and
    // "zz-late" sorts after every fleet id.
    for id in ["a-late", "zz-late"] {
        coordinator
            .register_worker(worker_spec(id, "cpu", false, &[]))
            .unwrap();
    }
    let mut listed: Vec<String> = first
        .workers
        .iter()
        .map(|worker| worker.worker_id.clone())
        .collect();
    listed.extend(list_all_from(&client, first.next_page_token, 10));

    assert!(
        !listed.contains(&"a-late".to_string()),
        "a worker joining before cursor {cursor} was listed"
    );
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "an id was listed twice: {listed:?}"
    );
    let mut expected: Vec<String> = specs.iter().map(|spec| spec.id.clone()).collect();
    expected.push("zz-late".to_string());
    expected.sort();
    assert_eq!(listed, expected);
}

/// Lists the remaining pages of an unfiltered listing from `token`.
fn list_all_from(client: &MasterServiceClient, mut token: String, page_size: u32) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..100 {
        let page = list(
            client,
            &ListWorkersRequest {
                page_size,
                page_token: token,
                ..Default::default()
            },
        );
        ids.extend(page.workers.iter().map(|worker| worker.worker_id.clone()));
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
    panic!("still paging after 100 pages");
}

#[test]
fn malformed_token_rejected() {
    let (coordinator, address) = start_default();
    register_fleet(&coordinator, 10);
    let client = master_client(address);

    for token in [
        "zz",
        "not a token returned by ListWorkers",
        "0123456789abcdef0",
    ] {
        let status = list_error(
            &client,
            &ListWorkersRequest {
                page_token: token.to_string(),
                ..Default::default()
            },
        );
        assert_eq!(
            status.code(),
            RpcStatusCode::INVALID_ARGUMENT,
            "token {token:?}"
        );
        assert!(
            status.message().contains("page_token"),
            "token {token:?}: message does not name page_token: {}",
            status.message()
        );
    }
}

#[test]
fn token_from_other_filter_rejected() {
    let (coordinator, address) = start_default();
    register_fleet(&coordinator, 30);
    let client = master_client(address);
    let cuda = filter("cuda", GpuFilter::ANY, "");
    let first = list(
        &client,
        &ListWorkersRequest {
            page_size: 2,
            ..cuda.clone()
        },
    );
    assert!(!first.next_page_token.is_empty());

    let status = list_error(
        &client,
        &ListWorkersRequest {
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..filter("cuda", GpuFilter::GPU_ONLY, "")
        },
    );

    assert_eq!(status.code(), RpcStatusCode::INVALID_ARGUMENT);
    assert!(
        status.message().contains("page_token"),
        "message does not name page_token: {}",
        status.message()
    );
    let same_filter = list(
        &client,
        &ListWorkersRequest {
            page_size: 2,
            page_token: first.next_page_token,
            ..cuda
        },
    );
    assert_eq!(
        same_filter.workers.len(),
        2,
        "the token works with its own filter"
    );
}

#[test]
fn unknown_gpu_filter_rejected() {
    let (_coordinator, address) = start_default();
    let client = master_client(address);

    let status = list_error(
        &client,
        &ListWorkersRequest {
            gpu: EnumOrUnknown::from_i32(7),
            ..Default::default()
        },
    );

    assert_eq!(status.code(), RpcStatusCode::INVALID_ARGUMENT);
    assert!(
        status.message().contains("gpu"),
        "message does not name gpu: {}",
        status.message()
    );
}
