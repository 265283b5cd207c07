"""Example training worker for the grpc-coordinator, written in Python.

The worker registers with the coordinator, sends a heartbeat with a
simulated training status every --heartbeat-interval seconds, and
deregisters when it receives SIGINT or SIGTERM. It registers again when a
heartbeat is not acknowledged (the coordinator evicted or fenced this
registration) or when the coordinator incarnation changes (the coordinator
restarted), and retries failed calls with capped exponential backoff and
jitter.

The gRPC stubs come from proto/master.proto. The worker imports
`master_pb2` and `master_pb2_grpc` when they are on sys.path. Otherwise it
generates them into a temporary directory at start with grpc_tools, as this
command does:

    python -m grpc_tools.protoc -Iproto --python_out=OUT --grpc_python_out=OUT proto/master.proto

Run a coordinator with `make run`, then this worker with
`make run-python-worker` or `python examples/python/worker.py --help`.
It needs only grpcio and grpcio-tools.
"""

import argparse
import atexit
import importlib
import logging
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

log = logging.getLogger("worker")

DEFAULT_PROTO = Path(__file__).resolve().parents[2] / "proto" / "master.proto"

# Deadline of each unary call, in seconds.
CALL_TIMEOUT_S = 5.0
# First retry delay after a failed call and the cap on later ones, in seconds.
INITIAL_BACKOFF_S = 0.1
MAX_BACKOFF_S = 10.0

# Status codes that retrying the same request cannot fix.
FATAL_CODES = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED)

CHANNEL_OPTIONS = [
    # Connect directly even when http_proxy is set in the environment.
    ("grpc.enable_http_proxy", 0),
    # Reconnect on the same schedule as the call retries, so a restarted
    # coordinator is found within MAX_BACKOFF_S. The default cap in gRPC's
    # connection backoff protocol (doc/connection-backoff.md) is 120 s.
    ("grpc.initial_reconnect_backoff_ms", int(INITIAL_BACKOFF_S * 1000)),
    ("grpc.min_reconnect_backoff_ms", int(INITIAL_BACKOFF_S * 1000)),
    ("grpc.max_reconnect_backoff_ms", int(MAX_BACKOFF_S * 1000)),
]


class FatalError(Exception):
    """A failure that retrying cannot fix, such as a rejected registration."""


def load_stubs(proto_path):
    """Import master_pb2 and master_pb2_grpc, generating them from
    `proto_path` into a temporary directory when they are not importable.
    """
    try:
        return importlib.import_module("master_pb2"), importlib.import_module("master_pb2_grpc")
    except ImportError:
        pass

    # grpc_tools is imported only here, so a worker with pre-generated
    # stubs runs with grpcio alone.
    from grpc_tools import protoc

    proto_path = Path(proto_path).resolve()
    if not proto_path.is_file():
        raise FatalError(
            f"{proto_path} not found and master_pb2 is not importable; "
            f"pass --proto PATH/TO/master.proto"
        )
    out_dir = tempfile.mkdtemp(prefix="master-stubs-")
    atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
    code = protoc.main([
        "grpc_tools.protoc",
        f"--proto_path={proto_path.parent}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(proto_path),
    ])
    if code != 0:
        raise FatalError(f"grpc_tools.protoc failed with code {code} on {proto_path}")
    # master_pb2_grpc imports master_pb2 by its top-level name.
    sys.path.insert(0, out_dir)
    log.debug("generated stubs from %s into %s", proto_path, out_dir)
    return importlib.import_module("master_pb2"), importlib.import_module("master_pb2_grpc")


class Backoff:
    """Retry delays that double from INITIAL_BACKOFF_S up to MAX_BACKOFF_S.

    Each delay is drawn at random from the upper half of the current step
    ("equal jitter"), so workers that lost the coordinator together do not
    retry in lockstep.
    """

    def __init__(self, initial=INITIAL_BACKOFF_S, maximum=MAX_BACKOFF_S):
        self.initial = initial
        self.maximum = maximum
        self.step = initial

    def next_delay(self):
        """Return the next delay in seconds and double the step, up to the cap."""
        half = self.step / 2
        self.step = min(self.step * 2, self.maximum)
        return half + random.uniform(0, half)

    def reset(self):
        """Start again from the initial delay, after a call succeeded."""
        self.step = self.initial


class Worker:
    """One worker's session with the coordinator. `run()` registers,
    optionally waits for other workers, heartbeats until stopped and
    deregisters.
    """

    def __init__(self, pb, stub, args):
        self.pb = pb
        self.stub = stub
        self.args = args
        self.worker_id = args.worker_id
        self.stopping = threading.Event()
        self.backoff = Backoff()
        # Consecutive failed calls; only the first of a run is logged at warning.
        self.failures = 0
        # (incarnation, coordinator_incarnation) of the current registration.
        self.registration = None
        self.completed_batches = 0
        # The WaitForWorkers call in flight, cancelled by stop().
        self._wait_call = None
        self._lock = threading.Lock()

    def stop(self):
        """Ask `run()` to deregister and return; safe to call from a signal handler."""
        self.stopping.set()
        with self._lock:
            if self._wait_call is not None:
                self._wait_call.cancel()

    def run(self):
        """Run the session and return the process exit code."""
        try:
            if not self.register_until_accepted():
                return 0
            if self.args.wait_for and not self.wait_for_workers():
                return 0 if self.stopping.is_set() else 1
            self.heartbeat_until_stopped()
            return 0
        except FatalError as error:
            log.error("%s", error)
            return 2
        finally:
            self.deregister()

    # Registration and heartbeats.

    def capabilities(self):
        """Describe this machine; a real worker fills these in from its hardware."""
        return self.pb.WorkerCapabilities(
            gpu_enabled=False,
            max_batch_size=64,
            device_type="cpu",
            supported_models=["resnet50", "bert-base"],
        )

    def register_until_accepted(self):
        """Register, retrying with backoff. Return False if stopped first."""
        request = self.pb.RegisterWorkerRequest(
            worker_id=self.worker_id,
            capabilities=self.capabilities(),
            # The address other processes reach this worker at; port 0
            # means it serves nothing.
            host="127.0.0.1",
            port=0,
        )
        while not self.stopping.is_set():
            try:
                reply = self.stub.RegisterWorker(request, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as error:
                if error.code() in FATAL_CODES:
                    raise FatalError(f"registration rejected: {error.details()}") from error
                self.wait_before_retry(f"registration failed: {error.code().name} {error.details()}")
                continue
            if not reply.success:
                self.wait_before_retry(f"registration not accepted: {reply.message}")
                continue

            self.call_succeeded()
            self.registration = (reply.incarnation, reply.coordinator_incarnation)
            log.info(
                "registered %s with coordinator %x (incarnation %d)",
                self.worker_id, reply.coordinator_incarnation, reply.incarnation,
            )
            return True
        return False

    def heartbeat(self):
        """Send one heartbeat and register again if the coordinator has lost
        this registration. Return True if the heartbeat was acknowledged.

        Raises grpc.RpcError when the call fails.
        """
        incarnation, coordinator_incarnation = self.registration
        self.completed_batches += 10
        status = self.pb.WorkerStatus(
            current_job_id="example-job",
            cpu_usage=random.uniform(40.0, 60.0),
            memory_usage=30.0,
            gpu_usage=0.0,
            completed_batches=self.completed_batches,
        )
        request = self.pb.HeartbeatRequest(
            worker_id=self.worker_id,
            status=status,
            timestamp=int(time.time()),
            incarnation=incarnation,
        )
        reply = self.stub.SendHeartbeat(request, timeout=CALL_TIMEOUT_S)
        self.call_succeeded()

        if reply.coordinator_incarnation != coordinator_incarnation:
            # A new coordinator process has an empty registry.
            log.info(
                "coordinator restarted (%x -> %x); registering again",
                coordinator_incarnation, reply.coordinator_incarnation,
            )
        elif not reply.acknowledged:
            # Evicted after missing heartbeats, or fenced because another
            # registration with this id replaced this one.
            log.info("heartbeat not acknowledged (evicted or fenced); registering again")
        else:
            return True

        self.registration = None
        self.register_until_accepted()
        return False

    def heartbeat_until_stopped(self):
        """Heartbeat every interval until stopped or --max-heartbeats is reached."""
        acknowledged = 0
        delay = self.args.heartbeat_interval
        while not self.stopping.wait(delay):
            try:
                if self.heartbeat():
                    acknowledged += 1
            except grpc.RpcError as error:
                delay = self.retry_delay(f"heartbeat failed: {error.code().name} {error.details()}")
                continue
            delay = self.args.heartbeat_interval
            if self.args.max_heartbeats and acknowledged >= self.args.max_heartbeats:
                log.info("sent %d acknowledged heartbeats; stopping", acknowledged)
                return

    def deregister(self):
        """Remove this registration from the coordinator, trying once."""
        if self.registration is None:
            return
        incarnation = self.registration[0]
        self.registration = None
        request = self.pb.DeregisterWorkerRequest(worker_id=self.worker_id, incarnation=incarnation)
        try:
            reply = self.stub.DeregisterWorker(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            log.warning(
                "failed to deregister %s: %s %s; the coordinator will evict it "
                "after its heartbeat timeout",
                self.worker_id, error.code().name, error.details(),
            )
            return
        # removed is False when the coordinator had already evicted or
        # replaced this incarnation.
        log.info("deregistered %s (removed: %s)", self.worker_id, reply.removed)

    # Waiting for the other workers.

    def wait_for_workers(self):
        """Block until --wait-for workers are registered, then log their ids.

        The wait runs in slices no longer than the heartbeat interval with a
        heartbeat after each, so the coordinator does not evict this worker
        while it waits. Return False if stopped or timed out first.
        """
        required = self.args.wait_for
        deadline = time.monotonic() + self.args.wait_timeout
        log.info("waiting up to %.1fs for %d workers", self.args.wait_timeout, required)
        while not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.error("timed out after %.1fs waiting for %d workers", self.args.wait_timeout, required)
                return False
            slice_s = min(remaining, self.args.heartbeat_interval)
            request = self.pb.WaitForWorkersRequest(
                min_workers=required, timeout_ms=max(1, int(slice_s * 1000))
            )
            try:
                # The call deadline exceeds timeout_ms, so a timed-out wait
                # returns the server's status, which counts the workers present.
                reply = self.call_wait(request, timeout=slice_s + CALL_TIMEOUT_S)
            except grpc.FutureCancelledError:
                return False
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    log.info("still waiting: %s", error.details())
                    self.call_succeeded()
                elif error.code() in FATAL_CODES:
                    raise FatalError(f"WaitForWorkers rejected: {error.details()}") from error
                else:
                    self.wait_before_retry(f"WaitForWorkers failed: {error.code().name} {error.details()}")
                    continue
            else:
                self.call_succeeded()
                log.info(
                    "%d workers present (membership version %d): %s",
                    len(reply.worker_ids), reply.membership_version, ", ".join(reply.worker_ids),
                )
                return True

            try:
                self.heartbeat()
            except grpc.RpcError as error:
                self.wait_before_retry(f"heartbeat failed: {error.code().name} {error.details()}")
        return False

    def call_wait(self, request, timeout):
        """Call WaitForWorkers so that stop() can cancel it."""
        with self._lock:
            if self.stopping.is_set():
                raise grpc.FutureCancelledError()
            self._wait_call = self.stub.WaitForWorkers.future(request, timeout=timeout)
        try:
            return self._wait_call.result()
        finally:
            with self._lock:
                self._wait_call = None

    # Retries.

    def retry_delay(self, reason):
        """Log a failed call and return the backoff delay before the retry."""
        delay = self.backoff.next_delay()
        if self.failures == 0:
            log.warning("%s; retrying with backoff", reason)
        else:
            log.debug("%s; retrying in %.2fs", reason, delay)
        self.failures += 1
        return delay

    def wait_before_retry(self, reason):
        """Log a failed call and sleep the backoff delay, waking early on stop."""
        self.stopping.wait(self.retry_delay(reason))

    def call_succeeded(self):
        if self.failures:
            log.info("coordinator reachable again after %d failed calls", self.failures)
        self.failures = 0
        self.backoff.reset()


class MembershipWatcher:
    """Logs every WatchWorkers event on a background thread, opening the
    watch again with backoff when it ends, until stopped.
    """

    def __init__(self, pb, stub):
        self.pb = pb
        self.stub = stub
        self.stopping = threading.Event()
        self._call = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        """Cancel the watch and wait for the thread to end."""
        with self._lock:
            self.stopping.set()
            if self._call is not None:
                self._call.cancel()
        self._thread.join(timeout=CALL_TIMEOUT_S)

    def _run(self):
        backoff = Backoff()
        # Consecutive watches that ended before an event arrived; only the
        # first of a run is logged at warning.
        failures = 0
        while True:
            with self._lock:
                if self.stopping.is_set():
                    return
                # A watch is open until cancelled, so it has no deadline.
                self._call = self.stub.WatchWorkers(self.pb.WatchWorkersRequest())
            try:
                for event in self._call:
                    backoff.reset()
                    failures = 0
                    self.log_event(event)
                reason = "watch ended"
            except grpc.RpcError as error:
                if self.stopping.is_set():
                    return
                # UNAVAILABLE when the coordinator stops, RESOURCE_EXHAUSTED
                # when this watcher fell too far behind.
                reason = f"watch failed: {error.code().name} {error.details()}"

            delay = backoff.next_delay()
            if failures == 0:
                log.warning("%s; watching again with backoff", reason)
            else:
                log.debug("%s; watching again in %.2fs", reason, delay)
            failures += 1
            self.stopping.wait(delay)

    def log_event(self, event):
        kind = self.pb.EventKind.Name(event.kind)
        if event.kind == self.pb.SYNCED:
            # The events before SYNCED were the membership at this version.
            log.info("membership event SYNCED version=%d", event.membership_version)
            return
        log.info(
            "membership event %s worker=%s incarnation=%d version=%d",
            kind, event.worker.worker_id, event.worker.incarnation, event.membership_version,
        )


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Example training worker for grpc-coordinator.",
        epilog="LOG_LEVEL=DEBUG in the environment also logs each retry after the first.",
    )
    parser.add_argument(
        "--coordinator", default="127.0.0.1:50051", metavar="HOST:PORT",
        help="coordinator address (default: %(default)s)"
    )
    parser.add_argument(
        "--worker-id", default=f"worker-py-{os.getpid()}", metavar="ID",
        help="worker id, unique in the cluster (default: worker-py-<process id>)",
    )
    parser.add_argument(
        "--heartbeat-interval", type=positive_float, default=5.0, metavar="SECONDS",
        help="seconds between heartbeats (default: %(default)s)",
    )
    parser.add_argument(
        "--watch", action="store_true", help="also log membership events from WatchWorkers"
    )

    # For tests and cluster start-up.
    parser.add_argument(
        "--max-heartbeats", type=int, default=0, metavar="N",
        help="deregister and exit after N acknowledged heartbeats; 0 runs until a signal (default)",
    )
    parser.add_argument(
        "--wait-for", type=int, default=0, metavar="N",
        help="before heartbeating, wait until N workers, this one included, are registered",
    )
    parser.add_argument(
        "--wait-timeout", type=positive_float, default=300.0, metavar="SECONDS",
        help="seconds --wait-for waits before the worker exits with code 1 (default: %(default)s)",
    )
    parser.add_argument(
        "--proto", default=str(DEFAULT_PROTO), metavar="PATH",
        help="master.proto to generate stubs from when master_pb2 is not importable "
        "(default: %(default)s)",
    )

    args = parser.parse_args(argv)
    if args.max_heartbeats < 0:
        parser.error("--max-heartbeats must be 0 or more")
    if args.wait_for < 0:
        parser.error("--wait-for must be 0 or more")
    return args


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s [%(threadName)s] %(message)s",
    )
    try:
        pb, pb_grpc = load_stubs(args.proto)
    except FatalError as error:
        log.error("%s", error)
        return 2

    channel = grpc.insecure_channel(args.coordinator, options=CHANNEL_OPTIONS)
    stub = pb_grpc.MasterServiceStub(channel)
    worker = Worker(pb, stub, args)
    watcher = MembershipWatcher(pb, stub) if args.watch else None

    def on_signal(signum, _frame):
        log.info("received %s; stopping", signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    # The session runs on its own thread and the main thread only joins it,
    # so a signal handler never interrupts a thread that holds one of the
    # session's locks. Joining with a timeout lets the handlers run promptly.
    result = []
    session = threading.Thread(target=lambda: result.append(worker.run()), name="session")
    if watcher:
        watcher.start()
    session.start()
    while session.is_alive():
        session.join(timeout=0.5)

    if watcher:
        watcher.stop()
    channel.close()
    return result[0] if result else 1


if __name__ == "__main__":
    sys.exit(main())
