"""Shared by the package tests: the .deb (built once per source tree by build_deb.sh), and an
installation of it on this machine that is always purged again, with what the purge must leave
behind checked. Paths come from the environment that tests/package/meson.build sets.

Installing a package here touches the machine other builds and tests run on, so: nothing runs on
the service's socket (/run/gpu-broker/broker.sock, the default socket of root's clients); every
broker the tests start listens in a directory of their own; a gpubroker package that this test did
not install is never touched; the gpu-broker user and group, which the purge leaves as Debian
leaves system users, are removed again when they did not exist before; and the rootless Podman
user of the container test is made and removed by it."""
import glob
import grp
import os
import pwd
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ops"))
import opslib  # noqa: E402  (its Broker; it reads GPUBROKER_BROKER and GPUBROKER_SIM_LIBRARY)

# meson puts the build tree's library directories in LD_LIBRARY_PATH for tests that depend on
# built libraries: an installed package, and an image assembled from what a program links to, must
# do without them.
os.environ.pop("LD_LIBRARY_PATH", None)

SKIP = 77
SOURCE = os.environ["GPUBROKER_SOURCE_ROOT"]
DEB_DIR = os.environ["GPUBROKER_DEB_DIR"]
BUILD_DEB = os.path.join(SOURCE, "tests", "package", "build_deb.sh")
PROBE = os.environ.get("GPUBROKER_CDI_PROBE", "")
SHIM_DIR = "/usr/lib/x86_64-linux-gnu/gpubroker"
# Set while this test's installation exists: a gpubroker package found installed with it there was
# left by an interrupted run of this test, and is purged; one found without it is someone else's.
MARKER = "/var/lib/gpubroker-package-test.installed"
# Where the package's names appear (every file it ships or makes carries gpubroker or gpu-broker in
# its name or directory); container storage and the like are not walked.
SCANNED = ["/etc", "/usr", "/lib", "/var/lib", "/var/cache", "/run", "/opt"]
NOT_SCANNED = {"/var/lib/containers", "/var/lib/docker", "/var/cache/apt", "/usr/src", "/run/user", "/usr/share/doc-base"}
OURS = re.compile(r"gpubroker|gpu-broker")
failures = []


def fail(message):
    print("FAIL: " + message, flush=True)
    failures.append(message)


def check(condition, message):
    if not condition:
        fail(message)
    return condition


def skip(reason):
    print("SKIP: " + reason, flush=True)
    sys.exit(SKIP)


def finish():
    print("%d failure(s)" % len(failures))
    sys.exit(1 if failures else 0)


def run(command, check_status=True, **kwargs):
    """Runs `command`, prints it and its output, returns the CompletedProcess."""
    kwargs.setdefault("timeout", 600)
    print("$ " + " ".join(command), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    output = (result.stdout + result.stderr).rstrip()
    if output:
        print(output[-6000:], flush=True)
    if check_status and result.returncode != 0:
        fail("%s exited with %d" % (command[0], result.returncode))
    return result


def require_root_and_release_build():
    if os.environ.get("GPUBROKER_SANITIZED", "none") not in ("", "none"):
        skip("the package is built by dpkg-buildpackage without the sanitizers; the release build's suite tests it")
    if os.geteuid() != 0:
        skip("installing a package needs root (CI runs as root)")
    for tool in ["apt-get", "dpkg", "setpriv"]:
        if shutil.which(tool) is None:
            skip("%s is not installed" % tool)


def ensure_deb():
    """The package built from this source tree (built now when it is not there yet)."""
    result = subprocess.run(["bash", BUILD_DEB, SOURCE, DEB_DIR], text=True, capture_output=True, timeout=3600)
    print(result.stdout + result.stderr, flush=True)
    if result.returncode == SKIP:
        skip("the package cannot be built here: " + result.stdout.strip().splitlines()[-1])
    if result.returncode != 0:
        fail("the package did not build")
        finish()
    debs = sorted(glob.glob(os.path.join(DEB_DIR, "gpubroker_*_amd64.deb")))
    if not debs:
        fail("no gpubroker_*_amd64.deb in " + DEB_DIR)
        finish()
    return debs[-1]


def package_installed():
    result = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", "gpubroker"], capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip() not in ("", "not-installed", "config-files")


def names_of_ours():
    found = set()
    for root in SCANNED:
        for directory, subdirectories, files in os.walk(root):
            subdirectories[:] = [d for d in subdirectories if os.path.join(directory, d) not in NOT_SCANNED]
            for name in subdirectories + files:
                path = os.path.join(directory, name)
                if OURS.search(path):
                    found.add(path)
    return found


def account_exists():
    try:
        pwd.getpwnam("gpu-broker")
        return True
    except KeyError:
        return False


def group_exists():
    try:
        grp.getgrnam("gpu-broker")
        return True
    except KeyError:
        return False


class Installation:
    """`with Installation(deb) as installed:` installs the package with apt-get and purges it on
    the way out, checking that the purge leaves nothing of it behind."""

    def __init__(self, deb):
        self.deb = deb
        self.package_files = []

    def __enter__(self):
        if package_installed():
            if not os.path.exists(MARKER):
                skip("a gpubroker package is installed on this machine and this test did not install it; "
                     "the test installs and purges its own")
            print("purging the gpubroker package an interrupted run of this test left")
            run(["apt-get", "purge", "-y", "-q", "gpubroker"], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        self.before = names_of_ours()
        self.account_before = account_exists()
        self.group_before = group_exists()
        open(MARKER, "w").close()
        result = run(["apt-get", "install", "-y", "-q", "--no-install-recommends", self.deb],
                     env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if result.returncode != 0:
            self.purge_and_check()
            finish()
        listed = run(["dpkg", "-L", "gpubroker"]).stdout.split("\n")
        self.package_files = [p for p in listed if p.startswith("/") and p not in ("/.",)]
        return self

    def __exit__(self, *exception):
        self.purge_and_check()
        if failures:
            finish()  # a failure found while purging outweighs a skip on the way out
        return False

    def purge_and_check(self):
        run(["apt-get", "purge", "-y", "-q", "gpubroker"], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if os.path.exists(MARKER):
            os.unlink(MARKER)
        check(not package_installed(), "gpubroker is still installed after apt-get purge")
        # Every file and link the package listed is gone; its directories too, unless they were
        # there before (/usr/bin) or hold another package's files.
        remaining = [p for p in self.package_files if os.path.lexists(p) and not os.path.isdir(p)]
        check(not remaining, "files of the package remain after purge: %s" % remaining)
        # ... and nothing the maintainer scripts or the broker made: the CDI specification, the
        # unit's enablement, the socket directory, the JIT cache, dpkg's own records.
        leftovers = sorted(names_of_ours() - self.before)
        check(not leftovers, "the purge left behind: %s" % leftovers)
        print("after purge: none of the package's %d paths and no new gpubroker or gpu-broker name under %s"
              % (len(self.package_files), " ".join(SCANNED)))
        # The user and group stay, as README.md and debian/gpubroker.postrm say; this test removes
        # them again only when it made them, to leave the machine as it found it.
        check(account_exists() and group_exists(), "the purge removed the gpu-broker user or group, which it documents it keeps")
        if not self.account_before and account_exists():
            run(["userdel", "gpu-broker"], check_status=False)
        if not self.group_before and group_exists():
            run(["groupdel", "gpu-broker"], check_status=False)


class InstalledBroker(opslib.Broker):
    """The installed gpu-broker started by hand as systemd would (the gpu-broker user, the
    installed config), in a socket directory of this test's own: systemd is not PID 1 here, and
    the service's socket is the default of every root client on this machine."""

    def __init__(self, *extra):
        directory = "/run/gpubroker-package-test-%d" % os.getpid()
        os.makedirs(directory, mode=0o750, exist_ok=True)
        shutil.chown(directory, "gpu-broker", "gpu-broker")
        super().__init__(*extra, directory=directory, command=[
            "setpriv", "--reuid=gpu-broker", "--regid=gpu-broker", "--init-groups", "--",
            "/usr/bin/gpu-broker", "--config=/etc/gpu-broker.conf"])

    def stop(self):
        try:
            super().stop()
        finally:
            print("the installed broker's log:\n" + self.log_text())
            shutil.rmtree(self.dir, ignore_errors=True)
