"""gpu-broker cdi-spec from a `meson install` of this build (into a DESTDIR, so no root): the
specification passes the CDI rules (cdi_check.py) and declares a version Debian 12's Podman reads;
its devices are the broker's own (the UUIDs a broker started with the same options serves, read
back with broker-top); it mounts the socket's directory and the shim directory read-only at the
same paths and preloads exactly what gpu-broker-run preloads; it is refused for a socket in a
shared directory and for a directory without shims. The checker must refuse broken specs too."""
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdi_check  # noqa: E402

BUILD = os.environ["GPUBROKER_BUILD_ROOT"]
PREFIX = os.environ["GPUBROKER_PREFIX"]
BINDIR = os.path.join(PREFIX, os.environ["GPUBROKER_BINDIR"])
SHIM_DIR = os.path.join(PREFIX, os.environ["GPUBROKER_LIBDIR"], "gpubroker")
DEBIAN_12_PODMAN_CDI = (0, 5, 0)  # the newest CDI version Podman 4.3's loader accepts
failures = []
os.environ.pop("LD_LIBRARY_PATH", None)  # meson's, for the build tree's libraries: an install does without


def check(condition, message):
    if not condition:
        print("FAIL: " + message, flush=True)
        failures.append(message)
    return condition


destdir = tempfile.mkdtemp(prefix="gpubroker-cdi-spec-")
inside = lambda path: os.path.join(destdir, path.lstrip("/"))
installed = subprocess.run(os.environ["GPUBROKER_MESON"].split() + ["install", "-C", BUILD, "--destdir", destdir,
                                                                   "--no-rebuild", "--quiet"],
                           capture_output=True, text=True, timeout=240)
if installed.returncode != 0:
    print(installed.stdout[-3000:] + installed.stderr[-3000:])
    print("FAIL: meson install failed")
    sys.exit(1)
broker = inside(os.path.join(BINDIR, "gpu-broker"))
shim_dir = os.path.realpath(inside(SHIM_DIR))
socket_dir = os.path.join(destdir, "run")  # need not exist: the spec only names it
socket = os.path.join(socket_dir, "broker.sock")

written = subprocess.run([broker, "cdi-spec", "--driver=sim", "--sim-devices=2", "--socket=" + socket],
                         capture_output=True, text=True, timeout=60)
print(written.stdout + written.stderr)
check(written.returncode == 0, "gpu-broker cdi-spec exited with %d" % written.returncode)
spec = yaml.safe_load(written.stdout)
problems = cdi_check.problems(spec)
check(not problems, "not a valid CDI specification: %s" % problems)
check(spec["kind"] == "gpubroker.io/gpu", "kind %r" % spec["kind"])
check(cdi_check.version_key(spec["cdiVersion"]) <= DEBIAN_12_PODMAN_CDI,
      "cdiVersion %s is newer than Debian 12's Podman reads" % spec["cdiVersion"])

# The devices are the ones a broker started with the same options serves.
run_dir = tempfile.mkdtemp(prefix="gpubroker-cdi-broker-")
broker_socket = os.path.join(run_dir, "broker.sock")
process = subprocess.Popen([os.environ["GPUBROKER_BROKER"], "--driver=sim", "--sim-devices=2",
                            "--sim-library=" + os.environ["GPUBROKER_SIM_LIBRARY"], "--socket=" + broker_socket,
                            "--arena-bytes=1G", "--log-level=warning"])
try:
    deadline = 30  # seconds: a deadline for a loaded machine, not a figure
    for _ in range(deadline * 100):
        if os.path.exists(broker_socket + ".stats") or process.poll() is not None:
            break
        subprocess.run(["sleep", "0.01"])
    top = subprocess.run([os.environ["GPUBROKER_TOP"], "--json", "--socket=" + broker_socket], capture_output=True,
                         text=True, timeout=30)
    uuids = [d["uuid"] for d in json.loads(top.stdout or "{}").get("devices", [])]
finally:
    process.send_signal(signal.SIGTERM)
    check(process.wait(timeout=30) == 0, "the broker did not stop cleanly")
    shutil.rmtree(run_dir, ignore_errors=True)
check(len(uuids) == 2, "the broker serves %s" % uuids)
devices = {d["name"]: d["containerEdits"]["env"] for d in spec["devices"]}
check(list(devices) == ["all", "0", "1"] + uuids, "devices %s, not all, 0, 1 and the broker's %s" % (list(devices), uuids))
expected_visible = {"all": "0,1", "0": "0", "1": "1"}
expected_visible.update({uuid: uuid for uuid in uuids})
for name, env in devices.items():
    check(env == ["CUDA_VISIBLE_DEVICES=" + expected_visible.get(name, "?")], "device %s sets %s" % (name, env))

# What every device brings: the same shims gpu-broker-run preloads, the socket, read-only mounts.
edits = spec["containerEdits"]
env = dict(e.split("=", 1) for e in edits["env"])
printed = subprocess.run([inside(os.path.join(BINDIR, "gpu-broker-run")), "--print-env"], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k not in ("GPUBROKER_SHIM_DIR", "LD_PRELOAD")})
run_preload = [p for p in dict(re.findall(r"^(\w+)='(.*)'$", printed.stdout, re.M)).get("LD_PRELOAD", "").split(":")
               if p and "san.so" not in p]
check(env.get("LD_PRELOAD", "").split(":") == run_preload,
      "LD_PRELOAD %s is not gpu-broker-run's %s" % (env.get("LD_PRELOAD"), run_preload))
check(all(os.path.dirname(p) == shim_dir for p in run_preload) and len(run_preload) >= 8,
      "the preloaded shims are not the installed ones: %s" % run_preload)
check(env.get("LD_LIBRARY_PATH") == shim_dir, "LD_LIBRARY_PATH %s" % env.get("LD_LIBRARY_PATH"))
check(env.get("GPUBROKER_SOCKET") == socket, "GPUBROKER_SOCKET %s" % env.get("GPUBROKER_SOCKET"))
mounts = {m["hostPath"]: m for m in edits["mounts"]}
check(sorted(mounts) == sorted([socket_dir, shim_dir]), "mounts %s" % sorted(mounts))
for path, mount in mounts.items():
    check(mount["containerPath"] == path and {"bind", "ro", "nosuid", "nodev"} <= set(mount["options"]),
          "mount %s is not a read-only bind mount at the same path" % mount)

# Refused: a socket whose directory is shared with other things, and a directory without shims.
for arguments, reason in [(["--socket=/run/broker.sock"], "directory of its own"),
                          (["--socket=/run/user/1000/gpu-broker.sock"], "directory of its own"),
                          (["--socket=" + socket, "--shim-dir=" + destdir], "no shim libraries")]:
    refused = subprocess.run([broker, "cdi-spec", "--driver=sim"] + arguments, capture_output=True, text=True, timeout=60)
    check(refused.returncode == 1 and reason in refused.stderr and refused.stdout == "",
          "cdi-spec %s: status %d, %r" % (arguments, refused.returncode, refused.stderr))
shutil.rmtree(destdir)

# The checker itself refuses what the CDI loaders refuse.
broken_cases = {
    "no cdiVersion": lambda s: s.pop("cdiVersion"),
    "a version older than its device names": lambda s: s.update(cdiVersion="0.4.0"),
    "an unreleased version": lambda s: s.update(cdiVersion="0.9.0"),
    "a kind without a class": lambda s: s.update(kind="gpubroker.io"),
    "a kind with two slashes": lambda s: s.update(kind="gpubroker.io/gpu/x"),
    "a vendor starting with a digit": lambda s: s.update(kind="1gpubroker.io/gpu"),
    "a device name ending in '-'": lambda s: s["devices"][0].update(name="all-"),
    "two devices of one name": lambda s: s["devices"].append(copy.deepcopy(s["devices"][0])),
    "a device without edits": lambda s: s["devices"][0].update(containerEdits={}),
    "an environment entry without a name": lambda s: s["containerEdits"]["env"].append("=1"),
    "a mount without a containerPath": lambda s: s["containerEdits"]["mounts"][0].pop("containerPath"),
    "an unknown field": lambda s: s.update(containerSpec={}),
    "no devices": lambda s: s.update(devices=[]),
}
for what, mutate in broken_cases.items():
    broken = copy.deepcopy(spec)
    mutate(broken)
    found = cdi_check.problems(broken)
    if check(found, "the checker accepts a spec with %s" % what):
        print("refused with %s: %s" % (what, found[0]))

print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
