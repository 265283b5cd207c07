"""Tests of the coordinator's membership API through Python stubs:
incarnations and fencing, DeregisterWorker, ListWorkers paging and filters,
the WatchWorkers event stream, WaitForWorkers, and the standard health
service through the grpcio-health-checking client.

Every stream is read on a thread into a queue, so each read has a bound.
"""

import queue
import random
import signal
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Deadline of each unary call, in seconds.
RPC_TIMEOUT_S = 5.0
# Time a stream message or a stream's end is awaited, in seconds.
STREAM_TIMEOUT_S = 5.0
# Time after which a call that should still be pending is checked, in seconds.
PENDING_CHECK_S = 0.3
# Time within which a stop ends open streams and waits, in seconds. The
# coordinator ends them before its shutdown grace period starts.
STOP_PROMPT_S = 2.0
# Heartbeat timeout of the coordinator used where workers must not be
# evicted during a test.
STEADY_ARGS = ["--heartbeat-timeout", "60s"]

FLEET_SIZE = 300
PAGE_SIZE = 50
DEVICE_TYPES = ["cuda", "cpu", "rocm"]


class StreamReader:
    """Reads a server-streaming call on a thread into a queue."""

    def __init__(self, call):
        self.call = call
        self.messages = queue.Queue()
        self.error = None
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for message in self.call:
                self.messages.put(message)
        except grpc.RpcError as error:
            self.error = error
        finally:
            self.ended.set()

    def next(self, timeout=STREAM_TIMEOUT_S):
        """Return the next message, failing the test if none arrives in time."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no stream message within {timeout}s (stream error: {self.error})")

    def assert_quiet(self, duration):
        """Fail if a message arrives within `duration` seconds."""
        try:
            message = self.messages.get(timeout=duration)
        except queue.Empty:
            return
        pytest.fail(f"unexpected stream message: {message}")

    def end(self, timeout=STREAM_TIMEOUT_S):
        """Wait for the stream to end and return its error, None if it ended with OK."""
        if not self.ended.wait(timeout):
            pytest.fail(f"stream still open after {timeout}s")
        return self.error

    def cancel(self):
        self.call.cancel()
        self._thread.join(timeout=STREAM_TIMEOUT_S)


@pytest.fixture
def steady(start_coordinator):
    """A coordinator whose 60 s heartbeat timeout evicts no worker during a test."""
    return start_coordinator(extra_args=STEADY_ARGS)


@pytest.fixture
def steady_stub(master_pb2_grpc, steady):
    channel = steady.channel()
    grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT_S)
    yield master_pb2_grpc.MasterServiceStub(channel)
    channel.close()


def register(master_pb2, stub, worker_id, gpu=False, device_type="cpu", models=("resnet50",)):
    capabilities = master_pb2.WorkerCapabilities(
        gpu_enabled=gpu, max_batch_size=32, device_type=device_type, supported_models=list(models)
    )
    request = master_pb2.RegisterWorkerRequest(
        worker_id=worker_id, capabilities=capabilities, host="127.0.0.1", port=7000
    )
    response = stub.RegisterWorker(request, timeout=RPC_TIMEOUT_S)
    assert response.success, response
    return response


def heartbeat(master_pb2, stub, worker_id, incarnation=0):
    request = master_pb2.HeartbeatRequest(
        worker_id=worker_id, incarnation=incarnation, timestamp=int(time.time())
    )
    return stub.SendHeartbeat(request, timeout=RPC_TIMEOUT_S)


def deregister(master_pb2, stub, worker_id, incarnation=0):
    request = master_pb2.DeregisterWorkerRequest(worker_id=worker_id, incarnation=incarnation)
    return stub.DeregisterWorker(request, timeout=RPC_TIMEOUT_S).removed


def listed(master_pb2, stub):
    """Return every listed worker by id."""
    response = stub.ListWorkers(master_pb2.ListWorkersRequest(), timeout=RPC_TIMEOUT_S)
    assert response.next_page_token == ""
    return {info.worker_id: info for info in response.workers}


# Incarnations and fencing.


def test_incarnations_in_replies(master_pb2, steady_stub):
    stub = steady_stub
    first = register(master_pb2, stub, "w-inc")
    other = register(master_pb2, stub, "w-other")
    again = register(master_pb2, stub, "w-inc")

    assert first.incarnation != 0
    assert first.coordinator_incarnation != 0
    assert other.incarnation not in (0, first.incarnation)
    assert again.incarnation not in (0, first.incarnation, other.incarnation)
    assert other.coordinator_incarnation == first.coordinator_incarnation
    assert again.coordinator_incarnation == first.coordinator_incarnation

    acknowledged = heartbeat(master_pb2, stub, "w-inc", again.incarnation)
    assert acknowledged.acknowledged is True
    assert acknowledged.coordinator_incarnation == first.coordinator_incarnation
    unknown = heartbeat(master_pb2, stub, "w-never-registered")
    assert unknown.acknowledged is False
    assert unknown.coordinator_incarnation == first.coordinator_incarnation
    assert listed(master_pb2, stub)["w-inc"].incarnation == again.incarnation


def test_coordinator_incarnation_differs(master_pb2, master_pb2_grpc, start_coordinator):
    incarnations = []
    for coordinator in (start_coordinator(), start_coordinator()):
        channel = coordinator.channel()
        try:
            stub = master_pb2_grpc.MasterServiceStub(channel)
            incarnations.append(register(master_pb2, stub, "w-same").coordinator_incarnation)
        finally:
            channel.close()

    assert incarnations[0] != incarnations[1]


def test_stale_heartbeat_fenced(master_pb2, steady_stub):
    stub = steady_stub
    stale = register(master_pb2, stub, "w-fenced").incarnation
    current = register(master_pb2, stub, "w-fenced").incarnation

    assert heartbeat(master_pb2, stub, "w-fenced", stale).acknowledged is False
    assert heartbeat(master_pb2, stub, "w-fenced", stale + 12345).acknowledged is False
    assert heartbeat(master_pb2, stub, "w-fenced", current).acknowledged is True
    # 0 means the worker sent no incarnation, which is never fenced.
    assert heartbeat(master_pb2, stub, "w-fenced", 0).acknowledged is True
    # A fenced heartbeat leaves the current registration in place.
    assert listed(master_pb2, stub)["w-fenced"].incarnation == current


def test_deregister_removed(master_pb2, steady_stub):
    stub = steady_stub
    stale = register(master_pb2, stub, "w-leaving").incarnation
    current = register(master_pb2, stub, "w-leaving").incarnation
    register(master_pb2, stub, "w-staying")

    assert deregister(master_pb2, stub, "w-leaving", stale) is False
    assert "w-leaving" in listed(master_pb2, stub)
    assert deregister(master_pb2, stub, "w-leaving", current) is True
    assert deregister(master_pb2, stub, "w-leaving", current) is False
    assert "w-leaving" not in listed(master_pb2, stub)
    assert deregister(master_pb2, stub, "w-never-registered") is False
    # Incarnation 0 removes whichever registration is current.
    assert deregister(master_pb2, stub, "w-staying", 0) is True
    assert listed(master_pb2, stub) == {}
    assert heartbeat(master_pb2, stub, "w-leaving", current).acknowledged is False


def test_deregister_empty_id(master_pb2, steady_stub):
    with pytest.raises(grpc.RpcError) as raised:
        deregister(master_pb2, steady_stub, "")

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "worker_id" in raised.value.details()


# ListWorkers.


def fleet_worker(index):
    """Return (id, gpu, device_type, models) of the fleet's worker `index`."""
    device_type = DEVICE_TYPES[index % len(DEVICE_TYPES)]
    models = ["resnet50", "bert-base"] if index % 5 == 0 else ["resnet50"]
    return f"w-{index:03d}", device_type != "cpu", device_type, models


@pytest.fixture
def fleet(master_pb2, steady_stub):
    """Register FLEET_SIZE workers in random order and return their
    (id, gpu, device_type, models) tuples.
    """
    workers = [fleet_worker(index) for index in range(FLEET_SIZE)]
    for worker_id, gpu, device_type, models in random.sample(workers, len(workers)):
        register(master_pb2, steady_stub, worker_id, gpu, device_type, models)
    return workers


def list_pages(master_pb2, stub, page_size, **filters):
    """Page through ListWorkers and return every response."""
    pages = []
    token = ""
    while True:
        request = master_pb2.ListWorkersRequest(page_size=page_size, page_token=token, **filters)
        page = stub.ListWorkers(request, timeout=RPC_TIMEOUT_S)
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages
        assert len(pages) <= FLEET_SIZE, "paging does not end"


def test_list_pages_all(master_pb2, steady_stub, fleet):
    pages = list_pages(master_pb2, steady_stub, PAGE_SIZE)

    assert [len(page.workers) for page in pages] == [PAGE_SIZE] * (FLEET_SIZE // PAGE_SIZE)
    assert all(page.next_page_token for page in pages[:-1])
    assert pages[-1].next_page_token == ""
    assert {page.total_count for page in pages} == {FLEET_SIZE}
    # One join per worker and nothing else.
    assert {page.membership_version for page in pages} == {FLEET_SIZE}
    ids = [info.worker_id for page in pages for info in page.workers]
    assert ids == sorted(worker[0] for worker in fleet)

    info = pages[0].workers[0]
    assert info.worker_id == "w-000"
    assert info.host == "127.0.0.1"
    assert info.port == 7000
    assert info.capabilities.device_type == "cuda"
    assert info.capabilities.gpu_enabled is True
    assert list(info.capabilities.supported_models) == ["resnet50", "bert-base"]
    assert info.incarnation != 0
    assert info.registered_at_unix_ms > 0


def test_list_default_page_size(master_pb2, steady_stub, fleet):
    page = steady_stub.ListWorkers(master_pb2.ListWorkersRequest(), timeout=RPC_TIMEOUT_S)

    assert len(page.workers) == FLEET_SIZE
    assert page.next_page_token == ""
    assert page.total_count == FLEET_SIZE


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"gpu": "GPU_ONLY"}, lambda gpu, device, models: gpu),
        ({"gpu": "CPU_ONLY"}, lambda gpu, device, models: not gpu),
        ({"device_type": "rocm"}, lambda gpu, device, models: device == "rocm"),
        ({"supported_model": "bert-base"}, lambda gpu, device, models: "bert-base" in models),
        (
            {"device_type": "cuda", "gpu": "GPU_ONLY", "supported_model": "bert-base"},
            lambda gpu, device, models: device == "cuda" and "bert-base" in models,
        ),
        ({"device_type": "tpu"}, lambda gpu, device, models: False),
    ],
    ids=["gpu-only", "cpu-only", "device", "model", "combined", "no-match"],
)
def test_list_filters(master_pb2, steady_stub, fleet, filters, expected):
    if "gpu" in filters:
        filters = dict(filters, gpu=master_pb2.GpuFilter.Value(filters["gpu"]))
    expected_ids = sorted(worker[0] for worker in fleet if expected(*worker[1:]))

    pages = list_pages(master_pb2, steady_stub, PAGE_SIZE, **filters)

    ids = [info.worker_id for page in pages for info in page.workers]
    assert ids == expected_ids
    assert all(len(page.workers) <= PAGE_SIZE for page in pages)
    assert all(len(page.workers) == PAGE_SIZE for page in pages[:-1])
    assert pages[-1].next_page_token == ""
    assert {page.total_count for page in pages} == {len(expected_ids)}


@pytest.mark.parametrize(
    "token",
    ["zz", "not-a-token", "0123456789abcdef", "0123456789abcdef7", "é" * 20],
    ids=["short", "not-hex", "no-id", "odd-length", "non-ascii"],
)
def test_list_bad_token(master_pb2, steady_stub, token):
    request = master_pb2.ListWorkersRequest(page_size=PAGE_SIZE, page_token=token)

    with pytest.raises(grpc.RpcError) as raised:
        steady_stub.ListWorkers(request, timeout=RPC_TIMEOUT_S)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in raised.value.details()


def test_list_token_other_filter(master_pb2, steady_stub, fleet):
    first = steady_stub.ListWorkers(
        master_pb2.ListWorkersRequest(page_size=PAGE_SIZE, device_type="cuda"),
        timeout=RPC_TIMEOUT_S,
    )
    assert first.next_page_token
    request = master_pb2.ListWorkersRequest(
        page_size=PAGE_SIZE, device_type="rocm", page_token=first.next_page_token
    )

    with pytest.raises(grpc.RpcError) as raised:
        steady_stub.ListWorkers(request, timeout=RPC_TIMEOUT_S)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "different filter" in raised.value.details()


def test_list_unknown_gpu_filter(master_pb2, steady_stub):
    # proto3 enums are open, so Python sends an unknown value as it is.
    request = master_pb2.ListWorkersRequest(gpu=7)

    with pytest.raises(grpc.RpcError) as raised:
        steady_stub.ListWorkers(request, timeout=RPC_TIMEOUT_S)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "gpu" in raised.value.details()


# WatchWorkers.


class KeepAlive:
    """Sends a heartbeat every 100 ms for each id in `ids` from a thread
    until stopped or 30 s have passed.
    """

    def __init__(self, master_pb2, stub, ids):
        self.ids = set(ids)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(master_pb2, stub), daemon=True
        )
        self._thread.start()

    def _run(self, master_pb2, stub):
        deadline = time.monotonic() + 30.0
        while not self._stop.wait(0.1) and time.monotonic() < deadline:
            with self._lock:
                ids = list(self.ids)
            for worker_id in ids:
                heartbeat(master_pb2, stub, worker_id)

    def discard(self, worker_id):
        with self._lock:
            self.ids.discard(worker_id)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=RPC_TIMEOUT_S)


def assert_event(master_pb2, event, kind, worker_id, version):
    assert master_pb2.EventKind.Name(event.kind) == kind, event
    assert event.worker.worker_id == worker_id, event
    assert event.membership_version == version, event


def test_watch_event_order(master_pb2, stub, coordinator):
    # The fixture coordinator evicts after 0.4 s, so every worker but the
    # one to be evicted is kept alive.
    registered = {}
    for worker_id in ["w-c", "w-a", "w-b"]:
        registered[worker_id] = register(master_pb2, stub, worker_id).incarnation
    keep_alive = KeepAlive(master_pb2, stub, ["w-a", "w-b", "w-c", "w-d"])
    watch = StreamReader(stub.WatchWorkers(master_pb2.WatchWorkersRequest()))
    try:
        snapshot = [watch.next() for _ in range(3)]
        for event, worker_id in zip(snapshot, ["w-a", "w-b", "w-c"]):
            assert_event(master_pb2, event, "SNAPSHOT", worker_id, 3)
            assert event.worker.incarnation == registered[worker_id]
            assert event.worker.capabilities.device_type == "cpu"
        synced = watch.next()
        assert master_pb2.EventKind.Name(synced.kind) == "SYNCED"
        assert synced.membership_version == 3
        assert not synced.HasField("worker")

        joined = register(master_pb2, stub, "w-d").incarnation
        event = watch.next()
        assert_event(master_pb2, event, "JOINED", "w-d", 4)
        assert event.worker.incarnation == joined

        again = register(master_pb2, stub, "w-a", gpu=True, device_type="cuda").incarnation
        event = watch.next()
        assert_event(master_pb2, event, "REREGISTERED", "w-a", 5)
        assert event.worker.incarnation == again
        assert event.worker.capabilities.device_type == "cuda"

        assert deregister(master_pb2, stub, "w-b") is True
        event = watch.next()
        assert_event(master_pb2, event, "LEFT", "w-b", 6)
        assert event.worker.incarnation == registered["w-b"]

        keep_alive.discard("w-b")
        keep_alive.discard("w-c")
        event = watch.next(timeout=10 * coordinator.heartbeat_timeout)
        assert_event(master_pb2, event, "EVICTED", "w-c", 7)
        assert event.worker.incarnation == registered["w-c"]

        # Heartbeats change no membership, so no further event follows.
        watch.assert_quiet(3 * coordinator.heartbeat_timeout)
        assert sorted(listed(master_pb2, stub)) == ["w-a", "w-d"]
    finally:
        keep_alive.stop()
        watch.cancel()


def test_watch_empty_snapshot(master_pb2, steady_stub):
    watch = StreamReader(steady_stub.WatchWorkers(master_pb2.WatchWorkersRequest()))
    try:
        synced = watch.next()
        assert master_pb2.EventKind.Name(synced.kind) == "SYNCED"
        assert synced.membership_version == 0
    finally:
        watch.cancel()


# WaitForWorkers.


def test_wait_returns_at_nth(master_pb2, steady_stub):
    stub = steady_stub
    register(master_pb2, stub, "gpu-1", gpu=True, device_type="cuda")
    register(master_pb2, stub, "gpu-2", gpu=True, device_type="cuda")
    register(master_pb2, stub, "cpu-1")
    request = master_pb2.WaitForWorkersRequest(min_workers=3, gpu=master_pb2.GPU_ONLY)
    wait = stub.WaitForWorkers.future(request, timeout=4 * STREAM_TIMEOUT_S)
    try:
        time.sleep(PENDING_CHECK_S)
        assert not wait.done(), "wait returned with two GPU workers"

        # A CPU worker does not count toward a GPU_ONLY wait.
        register(master_pb2, stub, "cpu-2")
        time.sleep(PENDING_CHECK_S)
        assert not wait.done(), "wait returned after a CPU worker joined"

        registrar = threading.Thread(
            target=register, args=(master_pb2, stub, "gpu-3"),
            kwargs={"gpu": True, "device_type": "cuda"},
        )
        registrar.start()
        registrar.join(timeout=RPC_TIMEOUT_S)
        response = wait.result(timeout=STREAM_TIMEOUT_S)
    finally:
        wait.cancel()

    assert list(response.worker_ids) == ["gpu-1", "gpu-2", "gpu-3"]
    assert response.membership_version == 5


def test_wait_already_satisfied(master_pb2, steady_stub):
    register(master_pb2, steady_stub, "w-1")
    request = master_pb2.WaitForWorkersRequest(min_workers=1, timeout_ms=100)

    response = steady_stub.WaitForWorkers(request, timeout=RPC_TIMEOUT_S)

    assert list(response.worker_ids) == ["w-1"]
    assert response.membership_version == 1


def test_wait_timeout_names_count(master_pb2, steady_stub):
    register(master_pb2, steady_stub, "w-only")
    request = master_pb2.WaitForWorkersRequest(min_workers=3, timeout_ms=300)

    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as raised:
        steady_stub.WaitForWorkers(request, timeout=RPC_TIMEOUT_S)
    elapsed = time.monotonic() - started

    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "1 of 3" in raised.value.details()
    assert 0.3 <= elapsed < RPC_TIMEOUT_S


def test_stop_ends_wait_and_watch(master_pb2, steady, steady_stub):
    register(master_pb2, steady_stub, "w-1")
    watch = StreamReader(steady_stub.WatchWorkers(master_pb2.WatchWorkersRequest()))
    wait = steady_stub.WaitForWorkers.future(
        master_pb2.WaitForWorkersRequest(min_workers=5), timeout=6 * STREAM_TIMEOUT_S
    )
    try:
        assert master_pb2.EventKind.Name(watch.next().kind) == "SNAPSHOT"
        assert master_pb2.EventKind.Name(watch.next().kind) == "SYNCED"
        time.sleep(PENDING_CHECK_S)
        assert not wait.done(), "wait for 5 workers returned with 1"

        started = time.monotonic()
        steady.send_signal(signal.SIGTERM)
        watch_error = watch.end(timeout=STOP_PROMPT_S)
        wait_error = wait.exception(timeout=STOP_PROMPT_S)
        elapsed = time.monotonic() - started
    finally:
        wait.cancel()
        watch.cancel()

    assert watch_error is not None
    assert watch_error.code() == grpc.StatusCode.UNAVAILABLE
    assert "stopping" in watch_error.details()
    assert wait_error is not None
    assert wait_error.code() == grpc.StatusCode.UNAVAILABLE
    assert "stopping" in wait_error.details()
    assert elapsed < STOP_PROMPT_S
    assert steady.wait_for_exit(STOP_PROMPT_S) == 0, steady.output()


# Health, through the grpcio-health-checking client.


@pytest.mark.parametrize("service", ["", "distributedml.MasterService"], ids=["server", "master"])
def test_health_check_serving(channel, service):
    health = health_pb2_grpc.HealthStub(channel)

    response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT_S)

    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_health_unknown_not_found(channel):
    health = health_pb2_grpc.HealthStub(channel)

    with pytest.raises(grpc.RpcError) as raised:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=RPC_TIMEOUT_S)

    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_watch_unknown(channel):
    health = health_pb2_grpc.HealthStub(channel)
    watch = StreamReader(health.Watch(health_pb2.HealthCheckRequest(service="no.such.Service")))
    try:
        assert watch.next().status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    finally:
        watch.cancel()


@pytest.mark.parametrize("service", ["", "distributedml.MasterService"], ids=["server", "master"])
def test_health_watch_stop(channel, coordinator, service):
    health = health_pb2_grpc.HealthStub(channel)
    watch = StreamReader(health.Watch(health_pb2.HealthCheckRequest(service=service)))
    try:
        assert watch.next().status == health_pb2.HealthCheckResponse.SERVING

        started = time.monotonic()
        coordinator.send_signal(signal.SIGTERM)
        update = watch.next(timeout=STOP_PROMPT_S)
        error = watch.end(timeout=STOP_PROMPT_S)
        elapsed = time.monotonic() - started
    finally:
        watch.cancel()

    assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert error is not None
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert elapsed < STOP_PROMPT_S
    assert coordinator.wait_for_exit(STOP_PROMPT_S) == 0, coordinator.output()
