"""The Debian package as a user gets it (README.md, "Installing the package"):

  package_test.py lintian     lintian reports no error on the .deb (its warnings are listed)
  package_test.py install     apt-get install ./gpubroker_*.deb: the files where they belong, the
                              user, group, socket directory, enabled unit and CDI specification the
                              maintainer scripts make; a real CUDA program through the installed
                              gpu-broker-run and broker; apt-get purge leaves nothing behind
  package_test.py container   Podman with --device gpubroker.io/gpu=...: a CUDA program in a
                              container built here runs through the host's broker with no NVIDIA
                              device node inside; without the device it sees no device
  package_test.py container-rootless   the same through rootless Podman, as a user the test makes,
                              with a broker of that user's own

The .deb is built once per source tree (build_deb.sh). install and container need root, and the
release build (a sanitizer build's suite skips them: the package is not built with sanitizers)."""
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdi_check  # noqa: E402
from packagelib import (PROBE, SHIM_DIR, Installation, InstalledBroker, check, ensure_deb, finish,  # noqa: E402
                        require_root_and_release_build, run, skip)
import opslib  # noqa: E402  (packagelib puts tests/ops on the path)

CUDA_LIBRARY = re.compile(r"^lib(cudart|cublas|cublasLt|cuda|nvidia-ml)\.so(\.|$)")
SHIMS = ["libcudart.so.12", "libcudart.so.13", "libcublas.so.12", "libcublas.so.13", "libcublasLt.so.12",
         "libcublasLt.so.13", "libcuda.so.1", "libnvidia-ml.so.1"]


def lintian():
    if shutil.which("lintian") is None:
        skip("lintian is not installed (scripts/setup.sh installs it)")
    deb = ensure_deb()
    result = run(["lintian", "--display-info", "--tag-display-limit", "0", deb], check_status=False)
    tags = [line for line in result.stdout.splitlines() if re.match(r"^[EWIPXO]: ", line)]
    counts = {level: sum(1 for t in tags if t.startswith(level + ":")) for level in "EWI"}
    print("lintian: %d error(s), %d warning(s), %d info tag(s)" % (counts["E"], counts["W"], counts["I"]))
    check(counts["E"] == 0, "lintian reports errors:\n" + "\n".join(t for t in tags if t.startswith("E:")))
    check(result.returncode == 0, "lintian exited with %d" % result.returncode)
    finish()


def spec_problems(path, socket):
    """The problems of the CDI specification at `path`, for a broker at `socket`."""
    with open(path) as f:
        spec = yaml.safe_load(f)
    problems = cdi_check.problems(spec)
    edits = spec.get("containerEdits", {})
    env = dict(e.split("=", 1) for e in edits.get("env", []))
    if env.get("GPUBROKER_SOCKET") != socket:
        problems.append("GPUBROKER_SOCKET is %r, not %r" % (env.get("GPUBROKER_SOCKET"), socket))
    preload = env.get("LD_PRELOAD", "").split(":")
    if sorted(os.path.basename(p) for p in preload) != sorted(SHIMS) or any(os.path.dirname(p) != SHIM_DIR for p in preload):
        problems.append("LD_PRELOAD is not every shim of %s: %s" % (SHIM_DIR, preload))
    mounts = {m["hostPath"]: m for m in edits.get("mounts", [])}
    for directory in [os.path.dirname(socket), SHIM_DIR]:
        mount = mounts.get(directory)
        if mount is None or mount["containerPath"] != directory or "ro" not in mount.get("options", []):
            problems.append("%s is not mounted read-only at the same path: %s" % (directory, mount))
    return problems


def install():
    require_root_and_release_build()
    deb = ensure_deb()
    with Installation(deb) as installed:
        files = set(installed.package_files)
        for program in ["gpu-broker", "gpu-broker-run", "broker-top", "gpubroker-bench"]:
            check("/usr/bin/" + program in files and os.access("/usr/bin/" + program, os.X_OK), "no /usr/bin/" + program)
        for library in SHIMS + ["libgpubroker-client.so", "libgpubroker-sim.so"]:
            check(os.path.join(SHIM_DIR, library) in files, "no %s in %s" % (library, SHIM_DIR))
        strays = [p for p in files if CUDA_LIBRARY.match(os.path.basename(p)) and os.path.dirname(p) != SHIM_DIR]
        check(not strays, "CUDA library names outside %s, where they would shadow the real ones: %s" % (SHIM_DIR, strays))
        for path in ["/lib/systemd/system/gpu-broker.service", "/usr/lib/sysusers.d/gpu-broker.conf",
                     "/usr/lib/tmpfiles.d/gpu-broker.conf", "/etc/gpu-broker.conf"]:
            check(path in files, "the package has no " + path)
        conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "gpubroker"]).stdout
        check("/etc/gpu-broker.conf" in conffiles, "/etc/gpu-broker.conf is not a conffile: " + conffiles)
        # What the maintainer scripts made.
        run(["getent", "passwd", "gpu-broker"])
        run(["getent", "group", "gpu-broker"])
        status = os.stat("/run/gpu-broker") if os.path.isdir("/run/gpu-broker") else None
        check(status is not None and status.st_mode & 0o777 == 0o750 and
              status.st_uid == int(run(["id", "-u", "gpu-broker"]).stdout),
              "/run/gpu-broker is not the gpu-broker user's, mode 0750 (tmpfiles.d)")
        check(os.path.islink("/etc/systemd/system/multi-user.target.wants/gpu-broker.service"),
              "the unit is not enabled (no multi-user.target.wants link)")
        check(os.path.isfile("/etc/cdi/gpubroker.yaml"), "postinst wrote no /etc/cdi/gpubroker.yaml")
        if os.path.isfile("/etc/cdi/gpubroker.yaml"):
            problems = spec_problems("/etc/cdi/gpubroker.yaml", "/run/gpu-broker/broker.sock")
            check(not problems, "/etc/cdi/gpubroker.yaml: %s" % problems)
        run(["/usr/bin/gpu-broker", "--config=/etc/gpu-broker.conf", "--help"])
        # The installed bench finds its broker, shims, kernel plugin and fatbin in the install.
        for scenario in ["launch", "discovery"]:
            run(["/usr/bin/gpubroker-bench", scenario, "--quick"], timeout=300)

        # The installed broker and the installed gpu-broker-run serve a real CUDA program.
        broker = InstalledBroker()
        try:
            if PROBE:
                served = run(["/usr/bin/gpu-broker-run", "--socket=" + broker.socket, PROBE], check_status=False, timeout=120)
                check(served.returncode == 0, "the CUDA program failed through the installed tools")
                check("runtime: %s/libcudart.so.13" % SHIM_DIR in served.stdout,
                      "the program was not bound to the installed shim")
                check("intact" in served.stdout, "no round trip through the installed broker")
            else:
                print("no nvcc at configure time: the installed tools serve Ollama's discovery pass instead")
                discovery = os.environ["GPUBROKER_DISCOVERY"]
                served = run(["/usr/bin/gpu-broker-run", "--socket=" + broker.socket, discovery], check_status=False,
                             timeout=120)
                check(served.returncode == 0, "the discovery pass failed through the installed tools")
            top = run(["/usr/bin/broker-top", "--json", "--socket=" + broker.socket])
            check(len(json.loads(top.stdout or "{}").get("devices", [])) == 1, "broker-top does not see the installed broker's device")
        finally:
            broker.stop()
    finish()


def assemble_image(workdir):
    """A root filesystem with the CUDA program and the libraries it needs, as an image holds them,
    plus the C++ runtime the shims need (the image's to provide, docs/packaging.md); nothing
    NVIDIA's but the program's own libcudart, and no /dev/nvidia*."""
    root = os.path.join(workdir, "root")
    libraries = set()
    needed_by_shims = set()
    for binary, into in [(PROBE, libraries)] + [(os.path.join(SHIM_DIR, s), needed_by_shims) for s in SHIMS]:
        for line in run(["ldd", binary]).stdout.splitlines():
            match = re.search(r"(/\S+) \(0x", line)
            if match and os.path.dirname(match.group(1)) != SHIM_DIR:
                into.add(match.group(1))
    print("the image holds the program's libraries %s and, for the shims, %s"
          % (sorted(map(os.path.basename, libraries)), sorted(map(os.path.basename, needed_by_shims - libraries))))
    os.makedirs(os.path.join(root, "lib/x86_64-linux-gnu"))
    os.makedirs(os.path.join(root, "lib64"))
    for library in libraries | needed_by_shims:
        name = os.path.basename(library)
        target = os.path.join(root, "lib64" if name.startswith("ld-linux") else "lib/x86_64-linux-gnu", name)
        shutil.copy2(os.path.realpath(library), target)
    shutil.copy2(PROBE, os.path.join(root, "cdi_probe"))
    archive = os.path.join(workdir, "rootfs.tar")
    run(["tar", "-C", root, "-cf", archive, "."])
    return archive


def probe_facts(output):
    return dict(re.findall(r"^(runtime|nvidia device nodes|devices): (.*)$", output, re.M))


def check_device_run(podman_run, image, device, expected_uuids):
    """Runs the probe in `image` with --device gpubroker.io/gpu=`device`: it must be bound to the
    mounted shim, see no NVIDIA device node, and round-trip memory on exactly `expected_uuids`."""
    given = run(podman_run + ["--device", "gpubroker.io/gpu=" + device, image, "/cdi_probe"], check_status=False)
    facts = probe_facts(given.stdout)
    check(given.returncode == 0, "--device gpubroker.io/gpu=%s: the CUDA program failed" % device)
    check(facts.get("nvidia device nodes") == "none", "an NVIDIA device node inside the container")
    check(facts.get("runtime") == SHIM_DIR + "/libcudart.so.13", "the program was not bound to the mounted shim")
    seen = re.findall(r"^device \d+: .* (GPU-[0-9a-f-]+): round trip of \d+ bytes intact$", given.stdout, re.M)
    check(seen == expected_uuids, "--device gpubroker.io/gpu=%s: devices %s, not the broker's %s" % (device, seen, expected_uuids))


ROOTLESS_USER = "gpubroker-rootless"
ROOTLESS_COMMENT = "gpubroker package test, rootless Podman"


def processes_of(uid):
    """The live (not zombie) processes running as `uid`."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/status" % entry) as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if fields["Uid"].split()[0] == str(uid) and not fields["State"].strip().startswith("Z"):
                pids.append(int(entry))
        except (OSError, ValueError, KeyError):
            pass
    return pids


def remove_rootless_user(uid, runtime):
    """Removes the test's rootless user, and first the processes Podman may have left running
    under it (its pause process): they are this test's, and are ended by their pids."""
    for pid in processes_of(uid):
        print("ending pid %d, which Podman left under the rootless user" % pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    run(["userdel", "--force", "--remove", ROOTLESS_USER], check_status=False)
    shutil.rmtree(runtime, ignore_errors=True)


def rootless(archive, podman, run_options):
    """The same as a user: rootless Podman, in a user namespace, and a broker of the user's own
    with its socket in the user's runtime directory (the service's socket directory is open to the
    gpu-broker group only, which a rootless container does not keep under runc). The user is this
    test's own, made now and removed after."""
    try:
        existing = pwd.getpwnam(ROOTLESS_USER)
    except KeyError:
        existing = None
    if existing is not None and existing.pw_gecos != ROOTLESS_COMMENT:
        skip("a user %s exists that this test did not make" % ROOTLESS_USER)
    if existing is not None:
        remove_rootless_user(existing.pw_uid, "/run/user/%d" % existing.pw_uid)
    run(["useradd", "--create-home", "--comment", ROOTLESS_COMMENT, "--shell", "/usr/sbin/nologin", ROOTLESS_USER])
    account = pwd.getpwnam(ROOTLESS_USER)
    runtime = "/run/user/%d" % account.pw_uid
    try:
        with open("/etc/subuid") as f:
            if not any(line.startswith(ROOTLESS_USER + ":") for line in f):
                skip("useradd gave %s no subordinate ids (/etc/subuid): no rootless Podman" % ROOTLESS_USER)
        os.makedirs(os.path.join(runtime, "gpu-broker"), mode=0o700)
        for directory in [runtime, os.path.join(runtime, "gpu-broker")]:
            os.chmod(directory, 0o700)
            os.chown(directory, account.pw_uid, account.pw_gid)
        as_user = ["setpriv", "--reuid=%d" % account.pw_uid, "--regid=%d" % account.pw_gid, "--init-groups", "--",
                   "env", "HOME=" + account.pw_dir, "USER=" + ROOTLESS_USER, "XDG_RUNTIME_DIR=" + runtime]
        broker = opslib.Broker("--sim-devices=2", directory=os.path.join(runtime, "gpu-broker"),
                               command=as_user + ["/usr/bin/gpu-broker", "--config=/etc/gpu-broker.conf"])
        spec_path = "/var/run/cdi/gpubroker-package-test-rootless-%d.yaml" % os.getpid()
        made_cdi_directory = not os.path.isdir("/var/run/cdi")
        os.makedirs("/var/run/cdi", exist_ok=True)
        image = "localhost/gpubroker-cdi-test:rootless"
        try:
            with open(spec_path, "w") as f:
                written = subprocess.run(["/usr/bin/gpu-broker", "cdi-spec", "--config=/etc/gpu-broker.conf",
                                          "--sim-devices=2", "--socket=" + broker.socket], stdout=f, text=True)
            check(written.returncode == 0 and not spec_problems(spec_path, broker.socket),
                  "the rootless broker's CDI specification")
            top = json.loads(run(["/usr/bin/broker-top", "--json", "--socket=" + broker.socket]).stdout or "{}")
            user_archive = os.path.join(account.pw_dir, "rootfs.tar")
            shutil.copy(archive, user_archive)
            os.chown(user_archive, account.pw_uid, account.pw_gid)
            run(as_user + podman + ["import", user_archive, image])
            bare = run(as_user + podman + ["run", "--rm"] + run_options + [image, "/cdi_probe"], check_status=False,
                       timeout=300)
            if bare.returncode in (125, 126, 127):
                skip("rootless Podman cannot run a container on this machine (%s)"
                     % (bare.stdout + bare.stderr).strip().splitlines()[-1:])
            check(bare.returncode == 3, "a rootless container without the device saw a device")
            check_device_run(as_user + podman + ["run", "--rm"] + run_options, image, "all",
                             [d["uuid"] for d in top.get("devices", [])])
        finally:
            if os.path.exists(spec_path):
                os.unlink(spec_path)
            if made_cdi_directory and not os.listdir("/var/run/cdi"):
                os.rmdir("/var/run/cdi")
            run(as_user + podman + ["system", "reset", "--force"], check_status=False)
            broker.stop()
    finally:
        remove_rootless_user(account.pw_uid, runtime)


def podman_command():
    """Podman and the options of every run, or a skip where there is none."""
    if not PROBE:
        skip("nvcc was not found at configure time: no CUDA program to run in the container")
    if shutil.which("podman") is None:
        skip("podman is not installed (scripts/setup.sh installs it)")
    # runc where it is there: Debian 12's crun 1.8 cannot run on a host with hybrid cgroups (as
    # this sandbox has). Explicit limits: Podman otherwise raises RLIMIT_NOFILE/NPROC to values a
    # sandbox may forbid. Neither changes what the test checks.
    podman = ["podman"] + (["--runtime", "runc"] if shutil.which("runc") else [])
    run_options = ["--network=none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
    return podman, run_options


def container_rootless():
    require_root_and_release_build()
    podman, run_options = podman_command()
    deb = ensure_deb()
    workdir = tempfile.mkdtemp(prefix="gpubroker-cdi-")
    with Installation(deb):
        try:
            rootless(assemble_image(workdir), podman, run_options)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    finish()


def container():
    require_root_and_release_build()
    podman, run_options = podman_command()
    deb = ensure_deb()
    workdir = tempfile.mkdtemp(prefix="gpubroker-cdi-")
    image = "localhost/gpubroker-cdi-test:%d" % os.getpid()
    spec_path = "/var/run/cdi/gpubroker-package-test-%d.yaml" % os.getpid()
    made_cdi_directory = not os.path.isdir("/var/run/cdi")
    with Installation(deb):
        broker = InstalledBroker("--sim-devices=2")
        try:
            # The specification for this test's broker (its own socket), where CDI gives it
            # precedence over the package's /etc/cdi/gpubroker.yaml (which names the service's).
            os.makedirs("/var/run/cdi", exist_ok=True)
            with open(spec_path, "w") as f:
                written = subprocess.run(["/usr/bin/gpu-broker", "cdi-spec", "--config=/etc/gpu-broker.conf",
                                          "--sim-devices=2", "--socket=" + broker.socket], stdout=f, text=True)
            check(written.returncode == 0, "gpu-broker cdi-spec failed")
            print(open(spec_path).read())
            problems = spec_problems(spec_path, broker.socket)
            check(not problems, "the CDI specification: %s" % problems)
            top = json.loads(run(["/usr/bin/broker-top", "--json", "--socket=" + broker.socket]).stdout or "{}")
            uuids = [d["uuid"] for d in top.get("devices", [])]
            check(len(uuids) == 2, "the broker does not serve two devices: %s" % uuids)
            sessions_before = top["broker"]["sessions_total"]

            run(podman + ["import", assemble_image(workdir), image])
            # Without the device: the image's own libcudart finds no driver and no device. This
            # first run also says whether Podman can run a container here at all (125: Podman
            # itself failed; 126, 127: the runtime could not start the command).
            bare = run(podman + ["run", "--rm"] + run_options + [image, "/cdi_probe"], check_status=False, timeout=300)
            if bare.returncode in (125, 126, 127):
                skip("Podman cannot run a container on this machine (%s); the CDI specification was checked"
                     % (bare.stdout + bare.stderr).strip().splitlines()[-1:])
            facts = probe_facts(bare.stdout)
            check(bare.returncode == 3 and facts.get("devices") == "0", "a container without the device saw devices")
            check("cudaGetDeviceCount: cuda" in bare.stdout, "a container without the device got no CUDA error")
            check(facts.get("runtime", "").endswith("/lib/x86_64-linux-gnu/libcudart.so.13"),
                  "a container without the device did not use its own libcudart")
            # With each kind of device: the host broker's devices through the shims, and no node.
            for device, expected in [("all", uuids), ("1", uuids[1:]), (uuids[0] if uuids else "none", uuids[:1])]:
                check_device_run(podman + ["run", "--rm"] + run_options, image, device, expected)
            # The host's broker served each container given the device, and none other.
            sessions = lambda: json.loads(subprocess.run(["/usr/bin/broker-top", "--json", "--socket=" + broker.socket],
                                                         capture_output=True, text=True).stdout or "{}")["broker"]["sessions_total"]
            opslib.wait_for(lambda: sessions() - sessions_before == 3, opslib.SETTLE,
                            "three sessions at the host's broker, one per container given the device")
        finally:
            run(podman + ["rmi", "-f", image], check_status=False)
            if os.path.exists(spec_path):
                os.unlink(spec_path)
            if made_cdi_directory and not os.listdir("/var/run/cdi"):
                os.rmdir("/var/run/cdi")
            shutil.rmtree(workdir, ignore_errors=True)
            broker.stop()
    finish()


{"lintian": lintian, "install": install, "container": container, "container-rootless": container_rootless}[sys.argv[1]]()
