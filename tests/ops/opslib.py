"""Shared by the operation tests: real processes — a sim gpu-broker, clients run through
gpu-broker-run, broker-top — started and stopped the way an operator would.

Paths come from the environment that tests/ops/meson.build sets."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

BROKER = os.environ["GPUBROKER_BROKER"]
SIM = os.environ["GPUBROKER_SIM_LIBRARY"]
TOP = os.environ.get("GPUBROKER_TOP", "")
RUN = os.environ.get("GPUBROKER_RUN", "")
BUSY = os.environ.get("GPUBROKER_BUSY_CLIENT", "")

SKIP = 77  # meson's "skipped"


def fail(message):
    print("FAIL: " + message, flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


# How long anything a test waits for (a broker's socket, a heartbeat, a screen, a session's end)
# may take on a 2-core machine with a CPU hog per core and the sanitizers on. A wait that runs out
# is waiting for something that never happens; a wait that succeeds says how long it took.
SETTLE = 30


def wait_for(predicate, timeout, what):
    """Polls predicate() until it returns something true (which it returns) or `timeout` seconds
    have passed (a failure naming `what`)."""
    start = time.monotonic()
    while True:
        value = predicate()
        if value:
            print("waited %.2f s for %s" % (time.monotonic() - start, what), flush=True)
            return value
        if time.monotonic() - start > timeout:
            fail("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(0.01)


class Broker:
    """A gpu-broker on the sim driver in a fresh directory; stop() checks it exits 0. `command`
    replaces the build's broker and its driver options (an installed broker, run as its user),
    `directory` the fresh directory (one that user may write)."""

    def __init__(self, *extra, env=None, command=None, directory=None):
        """extra: more gpu-broker options; env: more environment for the broker (its sim's)."""
        self.dir = directory or tempfile.mkdtemp(prefix="gpubroker-ops-")
        self.socket = os.path.join(self.dir, "broker.sock")
        self.stats = self.socket + ".stats"
        self.log = open(os.path.join(self.dir, "broker.log"), "w+")
        self.process = subprocess.Popen(
            (command or [BROKER, "--driver=sim", "--sim-library=" + SIM]) +
            ["--socket=" + self.socket, "--arena-bytes=1G", "--log-level=info", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=dict(os.environ, **(env or {})))
        wait_for(lambda: os.path.exists(self.socket) and os.path.exists(self.stats) or self.process.poll() is not None,
                 SETTLE, "the broker's socket")
        check(self.process.poll() is None, "the broker exited at start:\n" + self.log_text())

    def log_text(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=20)
        check(status == 0, "the broker exited with %s:\n%s" % (status, self.log_text()))

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)


class Client:
    """The nvcc-built busy_client, through gpu-broker-run: holds MIB of device memory and copies
    for SECONDS, or until stop(); started() returns once it holds its memory. A test whose checks
    need the client busy gives it far more SECONDS than they can take and stops it at the end."""

    def __init__(self, broker, seconds, mib, via=None, env=None):
        command = via if via is not None else [RUN, "--socket=" + broker.socket]
        self.process = subprocess.Popen(command + [BUSY, str(seconds), str(mib)], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env=env)
        self.lines = []

    def started(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("holding"):
                return self
        fail("the client ended before holding its memory:\n" + "\n".join(self.lines))

    def finish(self):
        rest, _ = self.process.communicate(timeout=60)
        self.lines += rest.splitlines()
        return self.process.returncode

    def stop(self):
        """Ends the copy loop now (SIGUSR1; gpu-broker-run execs the client, so the pid is its);
        the exit status, 0 when every copy came back intact."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)
        return self.finish()

    @property
    def pid(self):
        return self.process.pid


def top_json(broker):
    result = subprocess.run([TOP, "--socket=" + broker.socket, "--json", "--interval=0.3"], capture_output=True,
                            text=True, timeout=SETTLE)
    check(result.returncode == 0, "broker-top --json failed: " + result.stderr)
    return json.loads(result.stdout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cases(cases):
    """Runs the named case (argv[1]) or all of them."""
    names = sys.argv[1:] or list(cases)
    for name in names:
        print("== " + name, flush=True)
        status = cases[name]()
        if status == SKIP:
            print("skipped: " + name, flush=True)
            sys.exit(SKIP)
    print("ok", flush=True)
