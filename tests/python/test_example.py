"""Tests of examples/python/worker.py, run as a subprocess against a
coordinator started by the fixtures in conftest.py.

The worker's log lines are the interface checked here, together with what
the coordinator lists and logs.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from captured_process import CapturedProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_SCRIPT = REPO_ROOT / "examples" / "python" / "worker.py"

# Deadline of each call the test makes, in seconds.
RPC_TIMEOUT_S = 5.0
# Time a worker is given to log an expected line, including generating its
# stubs at start, in seconds.
LINE_TIMEOUT_S = 15.0
# Time a worker is given to exit once it should, in seconds.
EXIT_TIMEOUT_S = 10.0
# Time within which a signalled worker must exit, in seconds. The example
# worker cancels its wait and skips its sleep on a signal, so this is well
# below its 5 s call deadline.
SIGNAL_EXIT_S = 2.0
# Heartbeat interval of the example workers, in seconds: well under the
# fixture coordinator's 0.4 s heartbeat timeout.
INTERVAL = "0.1"

REGISTERED = r"registered {id} with coordinator (?P<coordinator>[0-9a-f]+) \(incarnation (?P<incarnation>\d+)\)"
EVENT = re.compile(
    r"membership event (?P<kind>[A-Z]+)(?: worker=(?P<worker>\S+) incarnation=(?P<incarnation>\d+))?"
    r" version=(?P<version>\d+)"
)


class ExampleWorker(CapturedProcess):
    """One examples/python/worker.py process; a test can wait for a line
    of its output with a bound.
    """

    def __init__(self, target, worker_id, args, environment):
        self.worker_id = worker_id
        command = [
            sys.executable, str(WORKER_SCRIPT),
            "--coordinator", target, "--worker-id", worker_id, *args,
        ]
        super().__init__(command, environment, f"worker-{worker_id}-output")

    def wait_until(self, predicate, description, timeout=LINE_TIMEOUT_S):
        """Wait until `predicate(lines)` returns a true value and return it."""
        found = None

        def done():
            nonlocal found
            found = predicate(list(self.lines))
            return found or self._eof

        with self._changed:
            self._changed.wait_for(done, timeout=timeout)
        if not found:
            pytest.fail(
                f"worker {self.worker_id} did not log {description} within {timeout}s "
                f"(exit code {self.process.poll()})\noutput:\n{self.output()}"
            )
        return found

    def wait_for_lines(self, pattern, count, timeout=LINE_TIMEOUT_S):
        """Wait for `count` lines matching the regular expression and return
        the matches so far.
        """
        regex = re.compile(pattern)

        def enough_matches(lines):
            found = [match for match in map(regex.search, lines) if match]
            return found if len(found) >= count else None

        return self.wait_until(enough_matches, f"{count} lines matching {pattern!r}", timeout)

    def wait_for_line(self, pattern, timeout=LINE_TIMEOUT_S):
        """Wait for a line matching the regular expression and return the first match."""
        return self.wait_for_lines(pattern, 1, timeout)[0]

    def matches(self, pattern):
        """Return every match of `pattern` in the output so far."""
        regex = re.compile(pattern)
        return [match for match in map(regex.search, self.output().splitlines()) if match]

    def events(self):
        """Return the membership event lines so far as dicts, in order."""
        return [match.groupdict() for match in self.matches(EVENT.pattern)]

    def wait_for_exit(self, timeout=EXIT_TIMEOUT_S):
        """Return the exit code, failing the test if the process still runs after `timeout`."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {self.worker_id} still running after {timeout}s\n{self.output()}")
        self._reader.join(timeout=EXIT_TIMEOUT_S)
        return code

    def kill(self, timeout=EXIT_TIMEOUT_S):
        super().kill(timeout)


def worker_environment(pythonpath=None):
    """Return the environment for a worker: no stubs on PYTHONPATH unless
    given, so by default the worker generates its own.
    """
    environment = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "LOG_LEVEL")
    }
    if pythonpath:
        environment["PYTHONPATH"] = str(pythonpath)
    return environment


@pytest.fixture
def start_worker(coordinator):
    """Return a function that starts an example worker against `coordinator`
    by default. Workers still running at teardown are killed.
    """
    started = []

    def start(worker_id, *args, target=None, pythonpath=None):
        worker = ExampleWorker(
            target or coordinator.target, worker_id, args, worker_environment(pythonpath)
        )
        started.append(worker)
        return worker

    yield start

    for worker in started:
        worker.kill()


def list_workers(master_pb2, stub):
    """Return the coordinator's workers by id."""
    response = stub.ListWorkers(master_pb2.ListWorkersRequest(), timeout=RPC_TIMEOUT_S)
    return {info.worker_id: info for info in response.workers}


def coordinator_incarnation(master_pb2, stub):
    """Return the coordinator incarnation from a heartbeat for an unknown id."""
    request = master_pb2.HeartbeatRequest(worker_id="probe-never-registered")
    return stub.SendHeartbeat(request, timeout=RPC_TIMEOUT_S).coordinator_incarnation


def wait_until_listed(master_pb2, stub, worker_id, accept=lambda info: True, timeout=LINE_TIMEOUT_S):
    """Poll ListWorkers until `worker_id` is listed and `accept(info)` returns True."""
    info = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = list_workers(master_pb2, stub).get(worker_id)
        if info is not None and accept(info):
            return info
        time.sleep(0.02)
    pytest.fail(f"{worker_id} not listed as expected within {timeout}s: {info}")


def test_heartbeats_then_exits(master_pb2, stub, coordinator, start_worker):
    worker = start_worker("py-counted", "--heartbeat-interval", "0.2", "--max-heartbeats", "5")

    registered = worker.wait_for_line(REGISTERED.format(id="py-counted"))
    assert registered["coordinator"] == f"{coordinator_incarnation(master_pb2, stub):x}"
    info = wait_until_listed(
        master_pb2, stub, "py-counted", lambda info: info.last_status.completed_batches > 0
    )
    assert info.incarnation == int(registered["incarnation"])
    assert info.last_status.current_job_id == "example-job"

    assert worker.wait_for_exit() == 0, worker.output()
    output = worker.output()
    assert "sent 5 acknowledged heartbeats; stopping" in output
    assert "deregistered py-counted (removed: True)" in output
    assert "py-counted" not in list_workers(master_pb2, stub)
    # A deregistration, not an eviction after the heartbeat timeout.
    assert f"worker py-counted deregistered (incarnation {info.incarnation})" in coordinator.output()


def test_watch_prints_events(master_pb2, stub, coordinator, start_worker):
    other = start_worker("py-other", "--heartbeat-interval", INTERVAL)
    wait_until_listed(master_pb2, stub, "py-other")
    watcher = start_worker("py-watcher", "--heartbeat-interval", INTERVAL, "--watch")
    watcher.wait_for_line(r"membership event SYNCED")

    # py-other leaves on SIGTERM, then joins again and leaves after 3 heartbeats.
    other.send_signal(signal.SIGTERM)
    assert other.wait_for_exit() == 0, other.output()
    again = start_worker("py-other", "--heartbeat-interval", INTERVAL, "--max-heartbeats", "3")
    assert again.wait_for_exit() == 0, again.output()
    rejoined = again.wait_for_line(REGISTERED.format(id="py-other"))

    def other_events(lines):
        events = [match.groupdict() for match in map(EVENT.search, lines) if match]
        about_other = [event for event in events if event["worker"] == "py-other"]
        return about_other if len(about_other) >= 4 else None

    about_other = watcher.wait_until(other_events, "four events about py-other")
    assert [event["kind"] for event in about_other] == ["SNAPSHOT", "LEFT", "JOINED", "LEFT"]
    first, left, joined, left_again = about_other
    assert left["incarnation"] == first["incarnation"]
    assert joined["incarnation"] == rejoined["incarnation"]
    assert left_again["incarnation"] == rejoined["incarnation"]

    # SYNCED follows the snapshot at its version, and every later event
    # raises the version by one.
    events = watcher.events()
    kinds = [event["kind"] for event in events]
    synced_at = kinds.index("SYNCED")
    assert events.index(first) < synced_at
    assert all(kind == "SNAPSHOT" for kind in kinds[:synced_at])
    assert first["version"] == events[synced_at]["version"]
    versions = [int(event["version"]) for event in events[synced_at:]]
    assert versions == list(range(versions[0], versions[0] + len(versions))), events

    watcher.send_signal(signal.SIGTERM)
    assert watcher.wait_for_exit() == 0, watcher.output()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_deregisters(master_pb2, stub, coordinator, start_worker, signum):
    worker = start_worker("py-signalled", "--heartbeat-interval", INTERVAL)
    info = wait_until_listed(master_pb2, stub, "py-signalled")

    started = time.monotonic()
    worker.send_signal(signum)
    code = worker.wait_for_exit()
    elapsed = time.monotonic() - started

    assert code == 0, worker.output()
    assert elapsed < SIGNAL_EXIT_S, worker.output()
    output = worker.output()
    assert f"received {signum.name}; stopping" in output
    assert "deregistered py-signalled (removed: True)" in output
    assert "py-signalled" not in list_workers(master_pb2, stub)
    assert f"worker py-signalled deregistered (incarnation {info.incarnation})" in coordinator.output()


def test_wait_for_lists_ids(master_pb2, stub, coordinator, start_worker):
    first = start_worker("py-wait-1", "--heartbeat-interval", INTERVAL, "--wait-for", "2",
                         "--max-heartbeats", "1")
    first.wait_for_line(r"waiting up to 300.0s for 2 workers")

    # The worker waits alone for three heartbeat timeouts. It keeps
    # heartbeating, so it is neither released nor evicted.
    time.sleep(3 * coordinator.heartbeat_timeout)
    assert first.matches(r"workers present") == []
    assert "py-wait-1" in list_workers(master_pb2, stub)

    second = start_worker("py-wait-2", "--heartbeat-interval", INTERVAL, "--wait-for", "2",
                          "--max-heartbeats", "1")
    for worker in (first, second):
        assert worker.wait_for_exit() == 0, worker.output()
        assert len(worker.matches(r"2 workers present \(membership version \d+\): py-wait-1, py-wait-2$")) == 1
        assert worker.matches(r"not acknowledged") == [], worker.output()
    assert "evicted worker py-wait-1" not in coordinator.output()


def test_wait_for_times_out(master_pb2, stub, coordinator, start_worker):
    worker = start_worker("py-alone", "--heartbeat-interval", "0.2", "--wait-for", "3",
                          "--wait-timeout", "1")

    assert worker.wait_for_exit() == 1, worker.output()
    output = worker.output()
    assert "1 of 3 required matching workers were present" in output
    assert "timed out after 1.0s waiting for 3 workers" in output
    assert "deregistered py-alone (removed: True)" in output
    assert "py-alone" not in list_workers(master_pb2, stub)


def test_sigterm_during_wait(master_pb2, stub, start_worker):
    # A 5 s interval makes each WaitForWorkers slice 5 s long, so a prompt
    # exit shows the signal cancelled the call in flight.
    worker = start_worker("py-waiting", "--heartbeat-interval", "5", "--wait-for", "2")
    worker.wait_for_line(r"waiting up to")
    wait_until_listed(master_pb2, stub, "py-waiting")
    time.sleep(0.3)

    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = worker.wait_for_exit()
    elapsed = time.monotonic() - started

    assert code == 0, worker.output()
    assert elapsed < SIGNAL_EXIT_S, worker.output()
    assert "deregistered py-waiting (removed: True)" in worker.output()
    assert worker.matches(r"workers present") == []


def test_fenced_reregisters(master_pb2, stub, start_worker):
    worker = start_worker("py-fenced", "--heartbeat-interval", INTERVAL)
    first = worker.wait_for_line(REGISTERED.format(id="py-fenced"))

    # Another registration with the same id fences the worker's incarnation.
    request = master_pb2.RegisterWorkerRequest(worker_id="py-fenced", host="127.0.0.1")
    replacement = stub.RegisterWorker(request, timeout=RPC_TIMEOUT_S).incarnation

    worker.wait_for_line(r"heartbeat not acknowledged \(evicted or fenced\); registering again")
    registrations = worker.wait_for_lines(REGISTERED.format(id="py-fenced"), 2)
    latest = int(registrations[-1]["incarnation"])
    assert latest not in (int(first["incarnation"]), replacement)
    info = wait_until_listed(master_pb2, stub, "py-fenced", lambda info: info.incarnation == latest)
    assert info.incarnation == latest

    worker.send_signal(signal.SIGTERM)
    assert worker.wait_for_exit() == 0, worker.output()


def test_restart_reregisters(master_pb2, master_pb2_grpc, start_coordinator, start_worker):
    first = start_coordinator()
    worker = start_worker("py-restart", "--heartbeat-interval", INTERVAL, "--watch",
                          target=first.target)
    before = worker.wait_for_line(REGISTERED.format(id="py-restart"))
    worker.wait_for_line(r"membership event SYNCED")

    failure = first.stop()
    assert failure is None, failure
    second = start_coordinator(port=first.port)

    channel = second.channel()
    try:
        stub = master_pb2_grpc.MasterServiceStub(channel)
        grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT_S)
        new_incarnation = f"{coordinator_incarnation(master_pb2, stub):x}"
        assert new_incarnation != before["coordinator"]

        after = worker.wait_for_lines(REGISTERED.format(id="py-restart"), 2)[-1]
        assert after["coordinator"] == new_incarnation
        worker.wait_for_line(rf"coordinator restarted \({before['coordinator']} -> {new_incarnation}\)")
        info = wait_until_listed(master_pb2, stub, "py-restart")
        assert info.incarnation == int(after["incarnation"])

        # The watch ends with the first coordinator and opens again on the second.
        worker.wait_for_line(r"watch failed: UNAVAILABLE .*; watching again with backoff")
        worker.wait_for_lines(r"membership event SYNCED", 2)
    finally:
        channel.close()

    worker.send_signal(signal.SIGTERM)
    assert worker.wait_for_exit() == 0, worker.output()


def test_importable_stubs(master_pb2, stub, start_worker):
    # With the stubs on PYTHONPATH, the worker needs no proto file.
    stubs_dir = Path(master_pb2.__file__).parent
    worker = start_worker("py-prebuilt", "--heartbeat-interval", INTERVAL, "--max-heartbeats", "1",
                          "--proto", "/nonexistent/master.proto", pythonpath=stubs_dir)

    assert worker.wait_for_exit() == 0, worker.output()
    assert "deregistered py-prebuilt (removed: True)" in worker.output()


def test_missing_proto_exits(start_worker):
    worker = start_worker("py-no-proto", "--proto", "/nonexistent/master.proto")

    assert worker.wait_for_exit() == 2, worker.output()
    assert "/nonexistent/master.proto not found" in worker.output()


def test_invalid_id_exits(master_pb2, stub, start_worker):
    # The coordinator rejects an empty id with INVALID_ARGUMENT, which
    # retrying cannot fix.
    worker = start_worker("", "--heartbeat-interval", INTERVAL)

    assert worker.wait_for_exit() == 2, worker.output()
    assert worker.matches(r"ERROR .*registration rejected: .*worker_id"), worker.output()
    assert worker.matches(r"retrying") == []
    assert list_workers(master_pb2, stub) == {}
