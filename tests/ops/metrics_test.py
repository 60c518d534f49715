"""The metrics endpoint: a scrape of a broker with busy clients parses as Prometheus text
(exposition format 0.0.4) and carries per-device and per-session series; a scraper that never
sends its request does not hold up sessions; a bad --metrics-listen is refused."""
import math
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request

from opslib import BROKER, SETTLE, Broker, Client, RUN, BUSY, check, fail, free_port, run_cases, wait_for

MIB = 1 << 20
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r"^(%s)(?:\{((?:%s)(?:,%s)*)?,?\})? (\S+)(?: (-?\d+))?$" % (NAME, LABEL, LABEL))


def parse_exposition(text):
    """A strict reader of the text format: every sample's family was declared by TYPE before it,
    HELP/TYPE come once per family, label syntax and values are valid. Returns
    {family: {"type": t, "samples": [(name, labels dict, value)]}}."""
    families = {}
    current = None
    check(text.endswith("\n"), "the exposition does not end with a newline")
    for number, line in enumerate(text.splitlines(), 1):
        where = "line %d: %r" % (number, line)
        if line == "":
            continue
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            check(len(parts) >= 3 and re.fullmatch(NAME, parts[2]), "bad comment " + where)
            family = families.setdefault(parts[2], {"type": None, "help": None, "samples": []})
            key = "help" if parts[1] == "HELP" else "type"
            check(family[key] is None, "second %s for %s" % (parts[1], parts[2]))
            family[key] = parts[3] if len(parts) > 3 else ""
            if key == "type":
                check(family["type"] in ("counter", "gauge", "histogram", "summary", "untyped"), "bad type " + where)
                check(not family["samples"], "TYPE after samples " + where)
                current = parts[2]
            continue
        check(not line.startswith("#"), "stray comment " + where)
        match = SAMPLE.match(line)
        check(match, "not a sample " + where)
        name, labels, value = match.group(1), match.group(2) or "", match.group(3)
        check(current is not None and name == current, "sample outside its family " + where)
        try:
            number_value = float(value)
        except ValueError:
            fail("bad value " + where)
        check(not math.isnan(number_value), "NaN " + where)
        parsed = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels))
        families[current]["samples"].append((name, parsed, number_value))
    return families


def scrape(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=SETTLE) as response:
        check(response.status == 200, "status %d" % response.status)
        check(response.headers["Content-Type"].startswith("text/plain; version=0.0.4"), "content type")
        return response.read().decode("utf-8")


def series(families, name, **labels):
    check(name in families, "no family " + name)
    return [v for _, l, v in families[name]["samples"] if all(l.get(k) == str(x) for k, x in labels.items())]


def scrape_parses_with_per_session_series():
    port = free_port()
    with Broker("--metrics-listen=127.0.0.1:%d" % port) as broker:
        # Busy until the checks are done (stop() below), however long a loaded machine makes them.
        first = Client(broker, 600, 32).started()
        second = Client(broker, 600, 8).started()
        # The device block is republished with the heartbeat (every second): the next one includes both.
        def scrape_with_both():
            text = scrape(port)
            used = series(parse_exposition(text), "gpubroker_device_memory_used_bytes", device=0)
            return text if used == [40 * MIB] else None
        text = wait_for(scrape_with_both, SETTLE, "a heartbeat with both clients' memory")
        families = parse_exposition(text)
        print("%d families, %d samples" % (len(families), sum(len(f["samples"]) for f in families.values())))
        check(families["gpubroker_session_calls_total"]["type"] == "counter", "calls are not a counter")
        for client, mib in ((first, 32), (second, 8)):
            held = series(families, "gpubroker_session_device_memory_bytes", pid=client.pid, program="busy_client")
            check(held == [mib * MIB], "pid %d holds %s, not %d MiB" % (client.pid, held, mib))
            labels = [l for _, l, _ in families["gpubroker_session_device_memory_bytes"]["samples"] if l["pid"] == str(client.pid)]
            check(labels[0]["abi"] == "13" and labels[0]["session"].isdigit(), "labels %s" % labels)
            check(series(families, "gpubroker_session_calls_total", pid=client.pid)[0] > 0, "no calls counted")
            # By request kind: every call counted under its kind's name, the kinds summing to the total.
            by_kind = {l["kind"]: v for _, l, v in families["gpubroker_session_calls_by_kind_total"]["samples"]
                       if l["pid"] == str(client.pid)}
            total = series(families, "gpubroker_session_calls_total", pid=client.pid)[0]
            check(by_kind.get("MemAlloc", 0) >= 1 and by_kind.get("CopyHostToDevice", 0) + by_kind.get("CopyArenaToDevice", 0) >= 1,
                  "calls by kind %s" % by_kind)
            check(sum(by_kind.values()) == total, "the kinds sum to %s, the total is %s" % (sum(by_kind.values()), total))
            check(series(families, "gpubroker_session_bytes_to_device_total", pid=client.pid)[0] > 0, "no H2D bytes")
            p50 = series(families, "gpubroker_session_call_latency_seconds", pid=client.pid, quantile="0.5")
            p99 = series(families, "gpubroker_session_call_latency_seconds", pid=client.pid, quantile="0.99")
            check(len(p50) == 1 and len(p99) == 1 and 0 < p50[0] <= p99[0], "latency quantiles %s %s" % (p50, p99))
        check(series(families, "gpubroker_sessions") == [2], "open sessions")
        check(series(families, "gpubroker_sessions_device_memory_bytes") == [40 * MIB], "total session memory")
        used = series(families, "gpubroker_device_memory_used_bytes", device=0)
        total = series(families, "gpubroker_device_memory_total_bytes", device=0)
        free = series(families, "gpubroker_device_memory_free_bytes", device=0)
        check(used == [40 * MIB] and free[0] == total[0] - used[0], "device memory %s %s %s" % (used, free, total))
        check(series(families, "gpubroker_build_info", driver="sim", pid=broker.process.pid) == [1], "build info")
        # Counters only grow between scrapes: a busy client's calls, scraped again until it has made more.
        before = series(families, "gpubroker_session_calls_total", pid=first.pid)[0]
        calls = lambda: series(parse_exposition(scrape(port)), "gpubroker_session_calls_total", pid=first.pid)[0]
        readings = []
        wait_for(lambda: readings.append(calls()) or readings[-1] != before, SETTLE, "the calls counter to move")
        check(all(a <= b for a, b in zip([before] + readings, readings)), "calls went down: %s, %s" % (before, readings))
        try:
            scrape(port, "/nothing")
            fail("an unknown path answered 200")
        except urllib.error.HTTPError as error:
            check(error.code == 404, "unknown path: %d" % error.code)
        check(first.stop() == 0 and second.stop() == 0, "a client failed")

        # A scraper that connects and says nothing holds the metrics thread for its 2 s receive limit;
        # sessions go on regardless. The measure: a short client's run beside a silent scraper
        # against the same run without one, in this test, so that a slow machine slows both.
        def short_client():
            started = time.monotonic()
            result = subprocess.run([RUN, "--socket=" + broker.socket, BUSY, "0.2", "4"], capture_output=True,
                                    text=True, timeout=SETTLE)
            check(result.returncode == 0, "a short session failed: " + result.stdout)
            return time.monotonic() - started
        baseline = short_client()
        silent = socket.create_connection(("127.0.0.1", port))
        elapsed = short_client()
        silent.close()
        print("a short client: %.2f s alone, %.2f s beside a silent scraper" % (baseline, elapsed))
        check(elapsed < baseline + 1.0, "a session waited on the silent scraper (%.2f s, %.2f s without one)" %
              (elapsed, baseline))
        # The broker notices a client's exit within 100 ms and reclaims the session.
        wait_for(lambda: series(parse_exposition(scrape(port)), "gpubroker_sessions") == [0], SETTLE,
                 "the sessions to close after their clients ended")
        broker.stop()


def silent_and_slow_scrapers_hold_up_no_one():
    """Twenty connections that send nothing and one that sends a byte at a time: a normal scrape
    is answered while they are all still open (one scrape at a time would have answered it only
    after each had run out its time), and the trickling one is dropped at its whole-request
    deadline although it never stops sending."""
    port = free_port()
    with Broker("--metrics-listen=127.0.0.1:%d" % port) as broker:
        wait_for(lambda: scrape(port), SETTLE, "the metrics endpoint")
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        trickle = socket.create_connection(("127.0.0.1", port))
        trickle.sendall(b"G")
        families = parse_exposition(scrape(port))
        check(series(families, "gpubroker_sessions") == [0], "the scrape beside the silent ones")

        def still_open(connection):
            try:
                return connection.recv(1, socket.MSG_DONTWAIT) != b""
            except BlockingIOError:
                return True
            except OSError:
                return False
        check(all(still_open(c) for c in silent), "a silent connection was closed before the scrape was answered")

        # The trickling client goes on sending; the server closes it at its deadline.
        def trickle_dropped():
            try:
                trickle.send(b"E", socket.MSG_DONTWAIT)
            except (BrokenPipeError, ConnectionResetError):
                return True
            except BlockingIOError:
                pass
            return not still_open(trickle)
        wait_for(trickle_dropped, SETTLE, "the trickling client to be dropped at its deadline")
        wait_for(lambda: not any(still_open(c) for c in silent), SETTLE, "the silent ones to be dropped")
        for c in silent + [trickle]:
            c.close()
        check(series(parse_exposition(scrape(port)), "gpubroker_sessions") == [0], "a scrape after them")
        broker.stop()


def bad_listen_addresses_are_refused():
    for bad in ["nonsense", "127.0.0.1", "127.0.0.1:99999", "example.com:80", ":80", "[::1:80"]:
        result = subprocess.run([BROKER, "--driver=sim", "--metrics-listen=" + bad], capture_output=True, text=True,
                                timeout=10)
        check(result.returncode == 2 and "--metrics-listen takes HOST:PORT" in result.stderr,
              "%r: status %d, %s" % (bad, result.returncode, result.stderr))


run_cases({
    "scrape": scrape_parses_with_per_session_series,
    "bad-address": bad_listen_addresses_are_refused,
    "slow-scrapers": silent_and_slow_scrapers_hold_up_no_one,
})
