"""Fixtures for the Python interop test: stubs generated from
proto/master.proto with grpc_tools, and coordinator processes started from
the built binary on 127.0.0.1 with a free port.
"""

import importlib
import importlib.resources
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from captured_process import CapturedProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "proto"
BINARY_NAME = "grpc-coordinator"

# The test only ever talks to servers it started itself, on loopback.
HOST = "127.0.0.1"

# Short enough that eviction is observed within a second or two.
HEARTBEAT_TIMEOUT_S = 0.4
MONITOR_INTERVAL_S = 0.1
SERVER_ARGS = [
    "--host", HOST,
    "--heartbeat-timeout", f"{int(HEARTBEAT_TIMEOUT_S * 1000)}ms",
    "--monitor-interval", f"{int(MONITOR_INTERVAL_S * 1000)}ms",
]

# Bounded waits, in seconds. A stop may use the whole default shutdown
# grace of 5 s and then wait 1 s for cancelled calls.
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
RPC_TIMEOUT_S = 5.0

# env_logger prefixes the message with a timestamp, level and module path.
LISTENING_LINE = re.compile(r"listening on (?P<host>\S+):(?P<port>\d+)\s*$")

# A proxy taken from the environment would send loopback traffic elsewhere.
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]


def find_binary():
    """Return $COORDINATOR_BINARY if set, else the first debug build found."""
    configured = os.environ.get("COORDINATOR_BINARY")
    if configured:
        path = Path(configured)
        if not path.is_file():
            pytest.fail(f"COORDINATOR_BINARY={configured} does not exist; run `make build`")
        return path

    candidates = [REPO_ROOT / "target" / "debug" / BINARY_NAME]
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "debug" / BINARY_NAME)
    candidates.append(
        Path.home() / ".cache" / "grpc-coordinator" / "target" / "debug" / BINARY_NAME
    )
    for path in candidates:
        if path.is_file():
            return path
    searched = ", ".join(str(path) for path in candidates)
    pytest.fail(f"coordinator binary not found in {searched}; run `make build`")


class CoordinatorProcess(CapturedProcess):
    """One coordinator process started from the built binary."""

    def __init__(self, binary, extra_args=()):
        args = [str(binary), *SERVER_ARGS, *extra_args]
        super().__init__(args, dict(os.environ, RUST_LOG="info"), "coordinator-output")
        self.heartbeat_timeout = HEARTBEAT_TIMEOUT_S
        self.monitor_interval = MONITOR_INTERVAL_S
        self.port = None

    def wait_until_listening(self, timeout=STARTUP_TIMEOUT_S):
        """Wait for the `listening on HOST:PORT` line and store the port."""
        def listening_or_closed():
            return self._find_address() is not None or self._eof

        with self._changed:
            self._changed.wait_for(listening_or_closed, timeout=timeout)
            address = self._find_address()
        if address is None:
            state = self.process.poll()
            reason = "timed out" if state is None else f"exited with code {state}"
            pytest.fail(
                f"coordinator {reason} before logging `listening on`\n"
                f"command: {' '.join(self.args)}\noutput:\n{self.output()}"
            )

        host, port = address
        assert host == HOST, f"coordinator listens on {host}, expected {HOST}\n{self.output()}"
        self.port = port

    def _find_address(self):
        for line in self.lines:
            match = LISTENING_LINE.search(line)
            if match:
                return match.group("host"), int(match.group("port"))
        return None

    @property
    def target(self):
        """Return the `host:port` a client dials."""
        return f"{HOST}:{self.port}"

    def channel(self):
        """Open an insecure channel to this coordinator."""
        return grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)

    def wait_for_exit(self, timeout):
        """Return the exit code, or None if the process still runs after `timeout`."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self, timeout=STOP_TIMEOUT_S):
        """Kill the process and wait for it and for the output reader."""
        super().kill(timeout)

    def stop(self):
        """Stop with SIGTERM and return a failure message, or None when the
        process exited with code 0 within STOP_TIMEOUT_S.
        """
        self.send_signal(signal.SIGTERM)
        code = self.wait_for_exit(STOP_TIMEOUT_S)
        if code is None:
            self.kill()
            return (
                f"coordinator still running {STOP_TIMEOUT_S}s after SIGTERM; killed it\n"
                f"output:\n{self.output()}"
            )
        self._reader.join(timeout=STOP_TIMEOUT_S)
        if code != 0:
            return f"coordinator exited with code {code}\noutput:\n{self.output()}"
        return None


@pytest.fixture(scope="session")
def generated_stubs(tmp_path_factory):
    """Generate master_pb2 and master_pb2_grpc with grpc_tools.protoc and
    return the two imported modules.
    """
    out_dir = tmp_path_factory.mktemp("stubs")
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    command = [
        sys.executable, "-m", "grpc_tools.protoc",
        f"--proto_path={PROTO_DIR}",
        f"--proto_path={well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO_DIR / "master.proto"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"protoc failed:\n{result.stdout}\n{result.stderr}"

    # master_pb2_grpc imports master_pb2 by its top-level name.
    sys.path.insert(0, str(out_dir))
    try:
        yield importlib.import_module("master_pb2"), importlib.import_module("master_pb2_grpc")
    finally:
        sys.path.remove(str(out_dir))
        sys.modules.pop("master_pb2", None)
        sys.modules.pop("master_pb2_grpc", None)


@pytest.fixture(scope="session")
def master_pb2(generated_stubs):
    """The generated message module."""
    return generated_stubs[0]


@pytest.fixture(scope="session")
def master_pb2_grpc(generated_stubs):
    """The generated service module, with MasterServiceStub."""
    return generated_stubs[1]


@pytest.fixture
def start_coordinator():
    """Return a function that starts a coordinator and waits until it listens.

    At teardown every coordinator still running gets SIGTERM, and the test
    fails unless each one exited with code 0 within STOP_TIMEOUT_S.
    """
    binary = find_binary()
    started = []

    def start(port=0, extra_args=()):
        """Start a coordinator on `port`; flags in `extra_args` override SERVER_ARGS."""
        coordinator = CoordinatorProcess(binary, ["--port", str(port), *extra_args])
        try:
            coordinator.wait_until_listening()
        except BaseException:
            coordinator.kill()
            raise
        started.append(coordinator)
        return coordinator

    yield start

    failures = []
    for coordinator in started:
        failure = coordinator.stop()
        if failure:
            failures.append(failure)
    if failures:
        pytest.fail("\n\n".join(failures))


@pytest.fixture
def coordinator(start_coordinator):
    """A coordinator process listening on 127.0.0.1 with a free port."""
    return start_coordinator()


@pytest.fixture
def channel(coordinator):
    """A connected channel to `coordinator`."""
    channel = coordinator.channel()
    try:
        grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT_S)
    except grpc.FutureTimeoutError:
        channel.close()
        pytest.fail(f"channel to {coordinator.target} not ready in {RPC_TIMEOUT_S}s")
    yield channel
    channel.close()


@pytest.fixture
def stub(master_pb2_grpc, channel):
    """A MasterServiceStub on `channel`."""
    return master_pb2_grpc.MasterServiceStub(channel)
