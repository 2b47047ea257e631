"""End-to-end fixtures: the real `fjord` binary on 127.0.0.1, started per test, stopped by its PID.

FJORD_BINARY names the binary (scripts/test sets it); FJORD_E2E_BACKENDS (comma-separated)
restricts the backends the parameterized tests run on.
"""

import os
import pathlib
import resource
import signal
import socket
import subprocess
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BINARY = os.environ.get("FJORD_BINARY", str(REPO / ".build" / "release" / "fjord"))
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One fjord process. Its data directory and port survive restarts. `open_files` sets the
    process's RLIMIT_NOFILE (soft and hard) before it starts, as `ulimit -n` would."""

    def __init__(self, data_dir: pathlib.Path, backend: str = "memory", extra_args=(), port: int | None = None,
                 open_files: int | None = None):
        self.data_dir = data_dir
        self.backend = backend
        self.extra_args = list(extra_args)
        self.open_files = open_files
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"fjord-{self.port}.log"
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Broker":
        assert self.proc is None, "broker already running"
        if not os.path.exists(BINARY):
            raise RuntimeError(f"fjord binary not found at {BINARY}; build it first (scripts/test does)")
        self.starts += 1
        # Durable backends refuse a missing data directory (an operator error); tests create it.
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"\n==== start #{self.starts} ====\n".encode())
        log.flush()
        args = [
            BINARY,
            "--backend", self.backend,
            "--data-dir", str(self.data_dir),
            "--listen", self.bootstrap,
            "--log-level", "info",
            *self.extra_args,
        ]
        limit = self.open_files
        preexec = None if limit is None else (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)))
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fjord exited with {self.proc.returncode} during startup:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"fjord did not listen within {START_TIMEOUT_S}s:\n{self.log_tail()}")

    def stop(self, sig=signal.SIGTERM) -> int:
        """Signals the process (by PID) and waits; kills it if it does not exit in time."""
        assert self.proc is not None
        os.kill(self.proc.pid, sig)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
            self.proc = None
            raise AssertionError(f"fjord did not stop within {STOP_TIMEOUT_S}s after {sig!r}:\n{self.log_tail()}")
        self.proc = None
        return code

    def kill(self) -> None:
        """kill -9: no shutdown, no flush; what was not synced may be lost."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)
            self.proc = None

    def restart(self) -> "Broker":
        if self.proc is not None:
            assert self.stop() == 0
        return self.start()

    def open_descriptors(self) -> int:
        """How many descriptors the running process holds (/proc/PID/fd)."""
        assert self.proc is not None
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def backends() -> list[str]:
    """FJORD_E2E_BACKENDS (comma-separated), else every backend the binary has."""
    chosen = os.environ.get("FJORD_E2E_BACKENDS")
    if chosen:
        return chosen.split(",")
    try:
        listing = subprocess.run([BINARY, "--list-backends"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return ["memory"]
    return [line.split("\t")[0] for line in listing.splitlines() if line.strip()] or ["memory"]


def durable_backends() -> list[str]:
    return [backend for backend in backends() if backend != "memory"]


@pytest.fixture
def make_broker(tmp_path):
    """Factory: make_broker(backend=..., extra_args=[...]) → a started Broker, stopped at teardown."""
    started: list[Broker] = []

    def make(backend: str = "memory", extra_args=(), name: str = "data") -> Broker:
        broker = Broker(tmp_path / name, backend=backend, extra_args=extra_args).start()
        started.append(broker)
        return broker

    yield make
    for broker in started:
        if broker.is_running():
            code = broker.stop()
            assert code == 0, f"fjord exited with {code} on SIGTERM:\n{broker.log_tail()}"


@pytest.fixture
def broker(make_broker) -> Broker:
    return make_broker()


@pytest.fixture(params=backends())
def broker_on_each_backend(make_broker, request) -> Broker:
    """A broker on each backend the binary has (FJORD_E2E_BACKENDS narrows the list): the client
    suites use it, so every client is proven against every backend, the default `file` included."""
    return make_broker(backend=request.param)


def unique_topic(prefix: str = "t") -> str:
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns()}"
