"""Checks a Container Device Interface (CDI) specification against the rules of the CDI
specification (cncf-tags/container-device-interface, SPEC.md, version 1.1.0) and of its reference
loader, which Podman, containerd and CRI-O use: a spec with an unknown field, a version older than
the fields it uses, a malformed kind, device name, environment entry or mount, or a device without
edits is refused whole.

    cdi_check.py SPEC.yaml...        prints each problem; exits 1 when there is one

problems(spec) returns the problems of a parsed specification (a dict), [] when it is valid."""
import re
import sys

import yaml

# Released versions of the specification, and the version each field or rule came with (SPEC.md,
# "Released versions"): a spec must declare at least the version of everything it uses.
VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0"]
SPEC_FIELDS = {"cdiVersion", "kind", "annotations", "devices", "containerEdits"}
DEVICE_FIELDS = {"name", "annotations", "containerEdits"}
EDIT_FIELDS = {"env", "deviceNodes", "hooks", "mounts", "additionalGids", "intelRdt", "netDevices"}
DEVICE_NODE_FIELDS = {"path", "hostPath", "type", "major", "minor", "fileMode", "permissions", "uid", "gid"}
MOUNT_FIELDS = {"hostPath", "containerPath", "type", "options"}
HOOK_FIELDS = {"hookName", "path", "args", "env", "timeout"}
HOOK_NAMES = {"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}
NET_DEVICE_FIELDS = {"hostInterfaceName", "name"}
INTEL_RDT_FIELDS = {"closID", "l3CacheSchema", "memBwSchema", "schemata", "enableMonitoring"}

SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
# Vendor and class: a letter first, a letter or digit last, letters, digits, '_', '-' and '.'
# between (dots in the class from 0.6.0); device names may also begin with a digit (0.5.0) and
# hold ':'.
VENDOR = re.compile(r"^[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")
CLASS_NO_DOTS = re.compile(r"^[A-Za-z]([A-Za-z0-9_-]*[A-Za-z0-9])?$")
DEVICE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?$")


def version_key(version):
    return tuple(int(part) for part in version.split("."))


class Checker:
    def __init__(self):
        self.problems = []
        self.required = "0.3.0"  # the oldest tagged version
        self.required_by = "the base specification"

    def problem(self, where, text):
        self.problems.append("%s: %s" % (where, text))

    def needs(self, version, what):
        if version_key(version) > version_key(self.required):
            self.required, self.required_by = version, what

    def fields(self, where, value, allowed, required=()):
        if not isinstance(value, dict):
            self.problem(where, "must be an object, not %r" % (value,))
            return False
        for name in sorted(set(value) - allowed):
            self.problem(where, "unknown field %r (the loader refuses the whole spec)" % name)
        for name in required:
            if name not in value:
                self.problem(where, "required field %r is missing" % name)
        return True

    def string(self, where, value, nonempty=True):
        if not isinstance(value, str) or (nonempty and value == ""):
            self.problem(where, "must be a %sstring, not %r" % ("non-empty " if nonempty else "", value))
            return False
        return True

    def string_list(self, where, value):
        if not isinstance(value, list):
            self.problem(where, "must be a list of strings, not %r" % (value,))
            return []
        return [v for i, v in enumerate(value) if self.string("%s[%d]" % (where, i), v, nonempty=False)]

    def annotations(self, where, value):
        self.needs("0.6.0", where)
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            self.problem(where, "must map strings to strings")

    def env(self, where, value):
        for i, entry in enumerate(self.string_list(where, value)):
            if entry.find("=") <= 0:
                self.problem("%s[%d]" % (where, i), "%r is not NAME=VALUE" % entry)

    def absolute(self, where, value):
        if self.string(where, value) and not value.startswith("/"):
            self.problem(where, "%r is not an absolute path" % value)

    def edits(self, where, edits):
        if not self.fields(where, edits, EDIT_FIELDS):
            return
        if "env" in edits:
            self.env(where + ".env", edits["env"])
        for i, node in enumerate(edits.get("deviceNodes") or []):
            at = "%s.deviceNodes[%d]" % (where, i)
            if self.fields(at, node, DEVICE_NODE_FIELDS, ["path"]):
                self.absolute(at + ".path", node.get("path"))
                if "hostPath" in node:
                    self.needs("0.5.0", at + ".hostPath")
                    self.absolute(at + ".hostPath", node["hostPath"])
                if node.get("type", "") not in ("", "b", "c", "u", "p"):
                    self.problem(at + ".type", "must be b, c, u or p, not %r" % node["type"])
                permissions = node.get("permissions", "")
                if permissions not in ("", "none") and (not isinstance(permissions, str) or permissions.strip("rwm")):
                    self.problem(at + ".permissions", "must be letters of rwm, not %r" % permissions)
        for i, mount in enumerate(edits.get("mounts") or []):
            at = "%s.mounts[%d]" % (where, i)
            if self.fields(at, mount, MOUNT_FIELDS, ["hostPath", "containerPath"]):
                self.string(at + ".hostPath", mount.get("hostPath"))
                self.absolute(at + ".containerPath", mount.get("containerPath"))
                if "type" in mount:
                    self.needs("0.4.0", at + ".type")
                    self.string(at + ".type", mount["type"])
                if "options" in mount:
                    self.string_list(at + ".options", mount["options"])
        for i, hook in enumerate(edits.get("hooks") or []):
            at = "%s.hooks[%d]" % (where, i)
            if self.fields(at, hook, HOOK_FIELDS, ["hookName", "path"]):
                if hook.get("hookName") not in HOOK_NAMES:
                    self.problem(at + ".hookName", "%r is not an OCI hook" % hook.get("hookName"))
                self.absolute(at + ".path", hook.get("path"))
                if "env" in hook:
                    self.env(at + ".env", hook["env"])
                if "timeout" in hook and (not isinstance(hook["timeout"], int) or hook["timeout"] <= 0):
                    self.problem(at + ".timeout", "must be a number of seconds above zero")
        if "additionalGids" in edits:
            self.needs("0.7.0", where + ".additionalGids")
            gids = edits["additionalGids"]
            if not isinstance(gids, list) or not all(isinstance(g, int) and 0 <= g < 2**32 for g in gids):
                self.problem(where + ".additionalGids", "must be a list of 32-bit unsigned group ids")
        if "intelRdt" in edits:
            self.needs("0.7.0", where + ".intelRdt")
            rdt = edits["intelRdt"]
            if self.fields(where + ".intelRdt", rdt, INTEL_RDT_FIELDS) and ({"schemata", "enableMonitoring"} & set(rdt)):
                self.needs("1.1.0", where + ".intelRdt.schemata/enableMonitoring")
        if "netDevices" in edits:
            self.needs("1.1.0", where + ".netDevices")
            for i, device in enumerate(edits["netDevices"] or []):
                at = "%s.netDevices[%d]" % (where, i)
                if self.fields(at, device, NET_DEVICE_FIELDS, ["hostInterfaceName", "name"]):
                    self.string(at + ".hostInterfaceName", device.get("hostInterfaceName"))
                    self.string(at + ".name", device.get("name"))

    def nonempty_edits(self, where, edits):
        return isinstance(edits, dict) and any(edits.get(field) for field in EDIT_FIELDS)

    def spec(self, spec):
        if not self.fields("spec", spec, SPEC_FIELDS, ["cdiVersion", "kind", "devices"]):
            return self.problems
        version = spec.get("cdiVersion")
        if self.string("cdiVersion", version) and not SEMVER.match(version):
            self.problem("cdiVersion", "%r is not a semantic version" % version)
        elif isinstance(version, str) and version not in VERSIONS:
            self.problem("cdiVersion", "%r is not a released CDI version (%s)" % (version, ", ".join(VERSIONS)))
        kind = spec.get("kind")
        if self.string("kind", kind):
            parts = kind.split("/")
            if len(parts) != 2:
                self.problem("kind", "%r is not vendor/class" % kind)
            else:
                vendor, device_class = parts
                if not VENDOR.match(vendor) or len(vendor) > 253:
                    self.problem("kind", "vendor %r must start with a letter, end with a letter or digit, and hold "
                                 "only letters, digits, '_', '-' and '.'" % vendor)
                if not VENDOR.match(device_class) or len(device_class) > 63:
                    self.problem("kind", "class %r must start with a letter, end with a letter or digit, hold only "
                                 "letters, digits, '_', '-' and '.', and have at most 63 characters" % device_class)
                elif not CLASS_NO_DOTS.match(device_class):
                    self.needs("0.6.0", "a dot in the class of the kind")
        if "annotations" in spec:
            self.annotations("annotations", spec["annotations"])
        if "containerEdits" in spec:
            self.edits("containerEdits", spec["containerEdits"])
        devices = spec.get("devices")
        if not isinstance(devices, list) or not devices:
            self.problem("devices", "must be a list of at least one device")
            devices = []
        seen = set()
        for i, device in enumerate(devices):
            at = "devices[%d]" % i
            if not self.fields(at, device, DEVICE_FIELDS, ["name"]):
                continue
            name = device.get("name")
            if self.string(at + ".name", name):
                at = "device %r" % name
                if not DEVICE_NAME.match(name):
                    self.problem(at, "a device name starts and ends with a letter or digit and holds only letters, "
                                 "digits, '_', '-', '.' and ':'")
                elif name[0].isdigit():
                    self.needs("0.5.0", "device name %r, which begins with a digit" % name)
                if name in seen:
                    self.problem(at, "is defined twice")
                seen.add(name)
            if "annotations" in device:
                self.annotations(at + ".annotations", device["annotations"])
            if not self.nonempty_edits(at, device.get("containerEdits")):
                self.problem(at, "has no container edits (the loader refuses a device without them)")
            else:
                self.edits(at + ".containerEdits", device["containerEdits"])
        if isinstance(version, str) and version in VERSIONS and version_key(version) < version_key(self.required):
            self.problem("cdiVersion", "%s is older than %s, which %s needs" % (version, self.required, self.required_by))
        return self.problems


def problems(spec):
    return Checker().spec(spec)


def main(paths):
    failed = False
    for path in paths:
        with open(path) as f:
            found = problems(yaml.safe_load(f))
        for line in found:
            print("%s: %s" % (path, line))
        if not found:
            print("%s: a valid CDI specification" % path)
        failed = failed or bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
