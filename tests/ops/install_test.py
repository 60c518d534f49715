"""`meson install` into a DESTDIR: the programs in bindir, the shims only in libdir/gpubroker
(never where they would shadow the real CUDA libraries), the unit, its sysusers file and the
sample config; the installed pieces work together (gpu-broker-run finds the installed shims
relative to itself; the installed broker serves an nvcc-built program through them); and
`systemd-analyze verify` passes on the installed unit."""
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

from opslib import BUSY, SETTLE, SKIP, check, fail, wait_for

BUILD = os.environ["GPUBROKER_BUILD_ROOT"]
PREFIX = os.environ["GPUBROKER_PREFIX"]
BINDIR = os.path.join(PREFIX, os.environ["GPUBROKER_BINDIR"])
LIBDIR = os.path.join(PREFIX, os.environ["GPUBROKER_LIBDIR"])
SYSCONFDIR = os.path.join(PREFIX, os.environ["GPUBROKER_SYSCONFDIR"])
MESON = os.environ["GPUBROKER_MESON"].split()
CUDA_LIBRARY = re.compile(r"^lib(cudart|cublas|cublasLt|cuda|nvidia-ml)\.so(\.|$)")

destdir = tempfile.mkdtemp(prefix="gpubroker-install-")
inside = lambda path: os.path.join(destdir, path.lstrip("/"))

result = subprocess.run(MESON + ["install", "-C", BUILD, "--destdir", destdir, "--no-rebuild"], capture_output=True,
                        text=True, timeout=240)
check(result.returncode == 0, "meson install failed:\n" + result.stdout[-3000:] + result.stderr[-3000:])

tree = []
for root, dirs, files in os.walk(destdir):
    tree += [os.path.join(root, f)[len(destdir):] for f in files]
print("\n".join(sorted(tree)))

for program in ["gpu-broker", "broker-top", "gpu-broker-run"]:
    path = inside(os.path.join(BINDIR, program))
    check(os.path.isfile(path) and os.stat(path).st_mode & stat.S_IXUSR, "no executable " + path)
shim_dir = os.path.join(LIBDIR, "gpubroker")
for library in ["libcudart.so.13", "libcudart.so.12", "libgpubroker-client.so"]:
    check(os.path.isfile(inside(os.path.join(shim_dir, library))), "no %s in %s" % (library, shim_dir))
# No CUDA library name anywhere but the private directory.
strays = [p for p in tree if CUDA_LIBRARY.match(os.path.basename(p)) and os.path.dirname(p) != shim_dir]
check(not strays, "CUDA library names outside %s: %s" % (shim_dir, strays))
unit = os.path.join(PREFIX, "lib/systemd/system/gpu-broker.service")
check(os.path.isfile(inside(unit)), "no unit at " + unit)
check(os.path.isfile(inside(os.path.join(PREFIX, "lib/sysusers.d/gpu-broker.conf"))), "no sysusers file")
tmpfiles = inside(os.path.join(PREFIX, "lib/tmpfiles.d/gpu-broker.conf"))
check(os.path.isfile(tmpfiles) and "d /run/gpu-broker 0750 gpu-broker gpu-broker" in open(tmpfiles).read(),
      "no tmpfiles.d entry for /run/gpu-broker")
config = os.path.join(SYSCONFDIR, "gpu-broker.conf")
check(os.path.isfile(inside(config)), "no sample config at " + config)
unit_text = open(inside(unit)).read()
check("ExecStart=%s --config=%s " % (os.path.join(BINDIR, "gpu-broker"), config) in unit_text,
      "the unit does not run the installed broker with the installed config")

# The installed shim finds the client library beside it ($ORIGIN), not somewhere else.
ldd = subprocess.run(["ldd", inside(os.path.join(shim_dir, "libcudart.so.13"))], capture_output=True, text=True,
                     env={k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}).stdout
client = [l for l in ldd.splitlines() if "libgpubroker-client.so" in l]
check(client and inside(shim_dir) in client[0], "installed shim resolves the client library elsewhere:\n" + ldd)

# The installed broker reads the installed sample config.
broker = inside(os.path.join(BINDIR, "gpu-broker"))
parsed = subprocess.run([broker, "--config=" + inside(config), "--help"], capture_output=True, text=True)
check(parsed.returncode == 0, "the sample config does not parse: " + parsed.stderr)

# The installed gpu-broker-run finds the installed shims relative to itself.
run = inside(os.path.join(BINDIR, "gpu-broker-run"))
environment = {k: v for k, v in os.environ.items() if k not in ("GPUBROKER_SHIM_DIR", "LD_PRELOAD")}
printed = subprocess.run([run, "--print-env"], capture_output=True, text=True, env=environment)
values = dict(re.findall(r"^(\w+)='(.*)'$", printed.stdout, re.M))
preload = [p for p in values.get("LD_PRELOAD", "").split(":") if "san.so" not in p]
check({"libcudart.so.12", "libcudart.so.13"} <= {os.path.basename(p) for p in preload},
      "installed gpu-broker-run preloads %s" % preload)
check(all(os.path.dirname(p) == inside(shim_dir) for p in preload), "preloads from outside the install: %s" % preload)

# The sim's ggml kernels lie beside it, where a sim broker looks for them by default.
check(os.path.exists(inside(os.path.join(shim_dir, "libgpubroker-sim-ggml.so"))),
      "the sim's ggml kernel plugin is not installed beside the sim")

# Installed broker + installed gpu-broker-run + installed shims serve an nvcc-built program.
if BUSY:
    # The broker finds the installed sim by itself (lib/gpubroker beside its bin/).
    check(os.path.exists(inside(os.path.join(shim_dir, "libgpubroker-sim.so"))), "the sim is not in the shim directory")
    socket_path = os.path.join(destdir, "broker.sock")
    process = subprocess.Popen([broker, "--driver=sim", "--socket=" + socket_path,
                                "--arena-bytes=1G", "--log-level=warning"])
    try:
        wait_for(lambda: os.path.exists(socket_path), SETTLE, "the installed broker")
        served = subprocess.run([run, "--socket=" + socket_path, BUSY, "0.2", "4"], capture_output=True, text=True,
                                env=environment, timeout=30)
        print(served.stdout, served.stderr)
        check(served.returncode == 0 and "done:" in served.stdout, "the installed pieces did not serve the program")
    finally:
        process.terminate()
        check(process.wait(timeout=20) == 0, "the installed broker did not stop cleanly")

# systemd-analyze verify on the installed unit, with the installed tree as the root (so that it
# finds the installed binary) and the host's units for what it depends on (sysinit.target, ...).
analyze = shutil.which("systemd-analyze")
if analyze is None:
    print("systemd-analyze not installed (scripts/setup.sh installs it): unit not verified")
    sys.exit(SKIP)
system_units = inside("/usr/lib/systemd/system")
host_units = "/lib/systemd/system"
if not os.path.exists(system_units):
    os.makedirs(os.path.dirname(system_units), exist_ok=True)
    os.symlink(host_units, system_units)
else:
    for name in os.listdir(host_units):
        if not os.path.exists(os.path.join(system_units, name)):
            os.symlink(os.path.join(host_units, name), os.path.join(system_units, name))
verify = subprocess.run([analyze, "verify", "--root=" + destdir, unit], capture_output=True, text=True, timeout=60)
print("systemd-analyze verify: status %d\n%s%s" % (verify.returncode, verify.stdout, verify.stderr))
check(verify.returncode == 0, "systemd-analyze verify failed")
check(not [l for l in (verify.stdout + verify.stderr).splitlines() if "gpu-broker" in l],
      "systemd-analyze verify has remarks on the unit")
shutil.rmtree(destdir)
print("ok")
