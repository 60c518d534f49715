"""broker-top against a real sim broker with clients that hold memory and keep calling:
--once, --json, and the live screen driven through tmux (send-keys, capture-pane)."""
import os
import re
import shutil
import subprocess
import time

from opslib import SETTLE, Broker, Client, SKIP, TOP, check, fail, run_cases, top_json, wait_for

MIB = 1 << 20
BUSY_SECONDS = 600  # longer than any test takes: each stops its clients when its checks are done


def session_of(report, pid):
    found = [s for s in report["sessions"] if s["pid"] == pid]
    return found[0] if found else None


def once_shows_every_column_and_the_clients_row():
    with Broker() as broker:
        client = Client(broker, BUSY_SECONDS, 48).started()

        def once():
            result = subprocess.run([TOP, "--socket=" + broker.socket, "--once", "--interval=0.5"],
                                    capture_output=True, text=True, timeout=SETTLE)
            check(result.returncode == 0, "--once failed: " + result.stderr)
            return result.stdout
        # The calls/s column needs calls between --once's two samples: the client is busy, so
        # another look shows them where a loaded machine kept it from calling during the first.
        screen = wait_for(lambda: (lambda s: s if any(l.split()[:1] == [str(client.pid)] and l.split()[5] not in ("0", "-")
                                                      for l in s.splitlines()) else None)(once()),
                          SETTLE, "--once to show the client's calls")
        print(screen)
        for title in ["PID", "PROGRAM", "ABI", "DEVMEM", "PINNED", "CALLS/S", "H2D/S", "D2H/S", "P50", "P99", "ERRORS",
                      "AGE", "USED", "FREE", "TOTAL", "UTIL"]:
            # The sorted column's title carries a v or ^ for its direction.
            check(re.search(r"(?<![A-Za-z0-9/])[v^]?%s(?![A-Za-z0-9/])" % re.escape(title), screen), "no column %s" % title)
        rows = [line for line in screen.splitlines() if line.split()[:1] == [str(client.pid)]]
        check(len(rows) == 1, "no row for the client's pid %d" % client.pid)
        fields = rows[0].split()
        # ABI: the runtime the program calls (gpu-broker-run preloads both shims).
        check(fields[1] == "busy_client" and fields[2] == "13", "row: %s" % rows[0])
        check(fields[3] == "48M", "device memory shown as %s, not 48M" % fields[3])
        check(fields[5] not in ("0", "-"), "no calls/s while the client is busy: %s" % rows[0])
        # The last call and the most called kinds of the interval, with their shares: "Kind; Kind 71% Kind 20%".
        calls = re.search(r"([A-Z][A-Za-z]+); ((?:[A-Z][A-Za-z]+ \d+% ?){1,3})", rows[0])
        check(calls is not None, "no last and most called calls in the row: %s" % rows[0])
        check("LAST CALL, MOST CALLED" in screen, "no calls column")
        check(any(line.split()[:1] == ["TOTAL"] for line in screen.splitlines()), "no totals line")
        check("sim driver" in screen, "the title does not name the driver")
        check(client.stop() == 0, "client failed: %s" % client.lines)
        broker.stop()


def json_carries_device_bytes_used_everywhere():
    with Broker() as broker:
        small = Client(broker, BUSY_SECONDS, 16).started()
        large = Client(broker, BUSY_SECONDS, 64).started()
        # The device block is republished with the heartbeat (every second).
        report = wait_for(lambda: (lambda r: r if r["devices"][0]["device_bytes_used"] >= 80 * MIB else None)(top_json(broker)),
                          SETTLE, "the device's used memory to include both clients")
        check(report["devices"], "no devices")
        for device in report["devices"]:
            check("device_bytes_used" in device, "device without device_bytes_used: %s" % device)
            check(device["device_bytes_used"] + device["free_bytes"] == device["total_bytes"], "used + free != total")
        for session in report["sessions"]:
            check("device_bytes_used" in session, "session without device_bytes_used: %s" % session)
        for client, mib in ((small, 16), (large, 64)):
            session = session_of(report, client.pid)
            check(session is not None, "no session for pid %d in %s" % (client.pid, report["sessions"]))
            check(session["device_bytes_used"] == mib * MIB, "pid %d holds %d bytes, not %d MiB" %
                  (client.pid, session["device_bytes_used"], mib))
            # A CUDA 13 program: gpu-broker-run preloads both runtime shims, and the one it calls
            # declares the ABI.
            check(session["program"] == "busy_client" and session["abi"] == 13, "session %s" % session)
            check(session["calls_per_second"] > 0, "no calls/s: %s" % session)
            check(session["bytes_to_device_per_second"] > 0 and session["bytes_from_device_per_second"] > 0,
                  "no copy traffic: %s" % session)
            check(session["latency_p50_ns"] <= session["latency_p99_ns"], "p50 above p99: %s" % session)
            check(session["pinned_bytes"] >= MIB, "the client's pinned buffer is not counted: %s" % session)
        check(report["totals"]["device_bytes_used"] == sum(s["device_bytes_used"] for s in report["sessions"]),
              "totals disagree with the sessions")
        check(report["broker"]["driver"] == "sim" and report["broker"]["pid"] == broker.process.pid, "broker block")
        check(small.stop() == 0 and large.stop() == 0, "a client failed")
        broker.stop()


class Terminal:
    """broker-top in a detached tmux session of its own server (-L), 160x40."""

    def __init__(self, broker, name):
        self.server = "gpubroker-ops-%d-%s" % (os.getpid(), name)
        self.tmux = ["tmux", "-L", self.server, "-f", "/dev/null"]
        # After broker-top exits, its last words and status stay on the pane.
        command = "%s --socket=%s --interval=0.5; echo EXIT=$?; sleep 60" % (TOP, broker.socket)
        subprocess.run(self.tmux + ["new-session", "-d", "-s", "top", "-x", "160", "-y", "40", command], check=True,
                       env=dict(os.environ, TERM="xterm-256color"))

    def screen(self):
        return subprocess.run(self.tmux + ["capture-pane", "-p", "-t", "top"], capture_output=True, text=True).stdout

    def keys(self, *keys):
        subprocess.run(self.tmux + ["send-keys", "-t", "top", *keys], check=True)

    def wait_for_screen(self, predicate, what, timeout=SETTLE):
        last = [""]

        def probe():
            last[0] = self.screen()
            return predicate(last[0])
        try:
            wait_for(probe, timeout, what)
            return last[0]
        finally:
            if not predicate(last[0]):
                print(last[0])

    def close(self):
        subprocess.run(self.tmux + ["kill-server"], capture_output=True)


def client_rows(screen, pids):
    """The order in which the clients' rows appear on the screen."""
    order = []
    for line in screen.splitlines():
        fields = line.split()
        if fields and fields[0] in pids:
            order.append(fields[0])
    return order


def live_screen_draws_history():
    """The live screen's history lines: sparklines of the driver's used memory and of calls/s fill
    in while a client holds memory and calls; USED is the driver's figure (nonzero); utilization,
    which the sim does not report, says n/a."""
    if shutil.which("tmux") is None:
        print("tmux not installed")
        return SKIP
    blocks = set("\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588")
    with Broker() as broker:
        client = Client(broker, BUSY_SECONDS, 64).started()
        terminal = Terminal(broker, "history")
        try:
            def history_line(screen, label):
                found = [l for l in screen.splitlines() if label in l and l.split()[:1] in (["0"], ["all"])]
                return found[0] if found else ""

            def drawn(screen):
                # A few samples of each, so the line is a history and not one reading.
                return all(sum(c in blocks for c in history_line(screen, label)) >= 3 for label in ("mem used", "calls/s"))
            screen = terminal.wait_for_screen(drawn, "sparklines of memory and calls/s")
            print(screen)
            device_rows = [l.split() for l in screen.splitlines() if l.split()[:1] == ["0"] and "GPU-" in l]
            check(len(device_rows) == 1, "no device row")
            # NAME may be several words: USED is the first size after it, read from the header's column.
            header = [l for l in screen.splitlines() if "USED" in l and "FREE" in l][0]
            row = [l for l in screen.splitlines() if l.split()[:1] == ["0"] and "GPU-" in l][0]
            used = row[header.index("NAME") + 28:header.index("USED") + 4].split()[-1]
            check(used not in ("0", ""), "the driver's USED reads %r" % used)
            check("n/a" in history_line(screen, "utilization"), "utilization is not n/a on the sim")
            check(client.stop() == 0, "client failed: %s" % client.lines)
        finally:
            terminal.close()
        broker.stop()


def live_screen_sorts_by_keys():
    if shutil.which("tmux") is None:
        print("tmux not installed")
        return SKIP
    with Broker() as broker:
        # Busy until every key has been checked: the test's waits, not a fixed time, set its length.
        small = Client(broker, BUSY_SECONDS, 16).started()
        large = Client(broker, BUSY_SECONDS, 64).started()
        pids = {str(small.pid), str(large.pid)}
        terminal = Terminal(broker, "sort")
        try:
            both = lambda s: len(client_rows(s, pids)) == 2
            screen = terminal.wait_for_screen(both, "both clients on the live screen")
            check("vDEVMEM" in screen, "not sorted by device memory, descending, at start")
            check(client_rows(screen, pids) == [str(large.pid), str(small.pid)], "64M client not first")
            # The calls/s column fills in once two samples have been taken.
            terminal.wait_for_screen(lambda s: all(
                l.split()[5] not in ("-", "0") for l in s.splitlines() if l.split()[:1] and l.split()[0] in pids),
                "calls/s of busy clients")
            terminal.keys("m")  # the sorted column again: reverse
            screen = terminal.wait_for_screen(lambda s: "^DEVMEM" in s and both(s), "ascending device memory")
            check(client_rows(screen, pids) == [str(small.pid), str(large.pid)], "ascending order wrong")
            terminal.keys("p")  # sort by pid, keeping the direction
            screen = terminal.wait_for_screen(lambda s: "^PID" in s and both(s), "sort by pid")
            check(client_rows(screen, pids) == sorted(pids, key=int), "pid order wrong")
            terminal.keys("r")
            screen = terminal.wait_for_screen(lambda s: "vPID" in s and both(s), "reverse pid order")
            check(client_rows(screen, pids) == sorted(pids, key=int, reverse=True), "reversed pid order wrong")
            terminal.keys("Right")  # the next column: program
            terminal.wait_for_screen(lambda s: "vPROGRAM" in s, "the next column")
            terminal.keys("q")
            terminal.wait_for_screen(lambda s: "EXIT=0" in s, "broker-top to quit with status 0")
        finally:
            terminal.close()
        check(small.stop() == 0 and large.stop() == 0, "a client failed")
        broker.stop()


def live_screen_leaves_when_the_broker_stops():
    if shutil.which("tmux") is None:
        return SKIP
    with Broker() as broker:
        client = Client(broker, 2, 8).started()
        terminal = Terminal(broker, "stop")
        try:
            terminal.wait_for_screen(lambda s: str(client.pid) in s, "the client on the live screen")
            client.finish()
            broker.stop()
            screen = terminal.wait_for_screen(lambda s: "EXIT=" in s, "broker-top to leave after the broker stopped")
            check("the broker has stopped" in screen and "EXIT=0" in screen, "no clean goodbye:\n" + screen)
        finally:
            terminal.close()


def live_screen_leaves_when_the_broker_is_killed():
    if shutil.which("tmux") is None:
        return SKIP
    with Broker() as broker:
        terminal = Terminal(broker, "kill")
        try:
            terminal.wait_for_screen(lambda s: "gpu-broker pid" in s, "the live screen")
            broker.kill()  # the stats file stays; only the heartbeat stops
            started = time.monotonic()
            screen = terminal.wait_for_screen(lambda s: "EXIT=" in s, "broker-top to notice the silent broker")
            check("not responding" in screen and "EXIT=0" in screen, "no clean goodbye:\n" + screen)
            print("noticed after %.1f s" % (time.monotonic() - started))
        finally:
            terminal.close()


def once_without_a_broker_says_what_to_start():
    result = subprocess.run([TOP, "--socket=/nonexistent/broker.sock", "--once"], capture_output=True, text=True,
                            timeout=5)
    check(result.returncode == 1, "status %d" % result.returncode)
    check("no broker stats at /nonexistent/broker.sock.stats" in result.stderr and "systemctl start gpu-broker" in
          result.stderr, "message: " + result.stderr)


run_cases({
    "once": once_shows_every_column_and_the_clients_row,
    "json": json_carries_device_bytes_used_everywhere,
    "history": live_screen_draws_history,
    "sort": live_screen_sorts_by_keys,
    "stop": live_screen_leaves_when_the_broker_stops,
    "kill": live_screen_leaves_when_the_broker_is_killed,
    "no-broker": once_without_a_broker_says_what_to_start,
})
