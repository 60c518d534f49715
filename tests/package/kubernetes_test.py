"""dist/kubernetes/ without a cluster: every object of the manifests against the Kubernetes API's
own schema (the generated models of Debian's python3-kubernetes: each field known, each required
field there, each value of its type), the rules the API server adds (names, a DaemonSet's selector
matching its pods, mounts naming declared volumes, absolute host paths), and what ties the
DaemonSet, the CDI specification and the runner pod together; and that README.md shows the runner
pod as it is in dist/. A checker that could not fail would prove nothing, so broken copies of the
manifests must be refused too."""
import copy
import os
import re
import sys

import yaml

try:
    import kubernetes.client as k8s
except ImportError:
    print("SKIP: python3-kubernetes is not installed (scripts/setup.sh installs it): no schema to check against")
    sys.exit(77)

SOURCE = os.environ["GPUBROKER_SOURCE_ROOT"]
KUBERNETES = os.path.join(SOURCE, "dist", "kubernetes")
KINDS = {("v1", "Namespace"): "V1Namespace", ("v1", "ConfigMap"): "V1ConfigMap",
         ("apps/v1", "DaemonSet"): "V1DaemonSet", ("v1", "Pod"): "V1Pod"}
PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
HOST_PATH_TYPES = {"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"}
CDI_DEVICE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*[A-Za-z0-9]/[A-Za-z][A-Za-z0-9_.-]*[A-Za-z0-9]=[A-Za-z0-9][A-Za-z0-9_.:-]*$")
failures = 0


def fail(message):
    global failures
    failures += 1
    print("FAIL: " + message)


def build(type_name, value, where, problems):
    """The model of `type_name` built from `value` the way the API's client builds it, with every
    unknown field, missing required field and mistyped value added to `problems`."""
    if type_name in PRIMITIVES:
        if not isinstance(value, PRIMITIVES[type_name]) or (type_name == "int" and isinstance(value, bool)):
            problems.append("%s: %r is not of type %s" % (where, value, type_name))
        return value
    if type_name.startswith("list["):
        if not isinstance(value, list):
            problems.append("%s: must be a list" % where)
            return None
        return [build(type_name[5:-1], v, "%s[%d]" % (where, i), problems) for i, v in enumerate(value)]
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            problems.append("%s: must be a map" % where)
            return None
        value_type = type_name[5:-1].split(", ", 1)[1]
        return {k: build(value_type, v, "%s.%s" % (where, k), problems) for k, v in value.items()}
    model = getattr(k8s, type_name)
    if not isinstance(value, dict):
        problems.append("%s: must be an object (%s)" % (where, type_name))
        return None
    attribute = {json_name: name for name, json_name in model.attribute_map.items()}
    arguments = {}
    for key, field in value.items():
        if key not in attribute:
            problems.append("%s: unknown field %r of %s" % (where, key, type_name))
            continue
        arguments[attribute[key]] = build(model.openapi_types[attribute[key]], field, "%s.%s" % (where, key), problems)
    try:
        return model(**arguments)
    except (ValueError, TypeError) as error:
        problems.append("%s: %s" % (where, error))
        return None


def pod_problems(spec, where):
    problems = []
    volumes = {v.get("name") for v in spec.get("volumes") or []}
    for volume in spec.get("volumes") or []:
        if not DNS_LABEL.match(volume.get("name", "")):
            problems.append("%s: volume name %r is not a DNS label" % (where, volume.get("name")))
        host = volume.get("hostPath")
        if host is not None:
            if not host.get("path", "").startswith("/"):
                problems.append("%s: volume %s: hostPath %r is not absolute" % (where, volume["name"], host.get("path")))
            if host.get("type", "") not in HOST_PATH_TYPES:
                problems.append("%s: volume %s: hostPath type %r" % (where, volume["name"], host.get("type")))
    names = set()
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        name = container.get("name", "")
        if not DNS_LABEL.match(name) or name in names:
            problems.append("%s: container name %r is not a unique DNS label" % (where, name))
        names.add(name)
        if not container.get("image"):
            problems.append("%s: container %s has no image" % (where, name))
        paths = set()
        for mount in container.get("volumeMounts") or []:
            if mount.get("name") not in volumes:
                problems.append("%s: container %s mounts %r, which no volume declares" % (where, name, mount.get("name")))
            if mount.get("mountPath") in paths or not str(mount.get("mountPath", "")).startswith("/"):
                problems.append("%s: container %s: mount path %r twice or not absolute" % (where, name, mount.get("mountPath")))
            paths.add(mount.get("mountPath"))
    return problems


def object_problems(document, where):
    if not isinstance(document, dict):
        return ["%s: not an object" % where]
    key = (document.get("apiVersion"), document.get("kind"))
    if key not in KINDS:
        return ["%s: apiVersion/kind %s is not one this check knows" % (where, "/".join(map(str, key)))]
    problems = []
    build(KINDS[key], document, "%s (%s)" % (where, key[1]), problems)
    metadata = document.get("metadata") or {}
    if not DNS_SUBDOMAIN.match(metadata.get("name", "")):
        problems.append("%s: metadata.name %r is not a DNS subdomain" % (where, metadata.get("name")))
    if key[1] == "DaemonSet":
        spec = document.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            problems.append("%s: the selector %s does not select the pod template's labels %s" % (where, selector, labels))
        problems += pod_problems((spec.get("template") or {}).get("spec") or {}, where)
    if key[1] == "Pod":
        problems += pod_problems(document.get("spec") or {}, where)
    return problems


def manifest_problems(documents, name):
    problems = []
    for i, document in enumerate(documents):
        problems += object_problems(document, "%s[%d]" % (name, i))
    return problems


def load(name):
    with open(os.path.join(KUBERNETES, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


broker_manifest = load("gpu-broker.yaml")
runner_manifest = load("runner-pod.yaml")
for name, documents in [("gpu-broker.yaml", broker_manifest), ("runner-pod.yaml", runner_manifest)]:
    found = manifest_problems(documents, name)
    for problem in found:
        fail(problem)
    print("%s: %d object(s) (%s), %d problem(s)" % (name, len(documents),
          ", ".join(d["kind"] for d in documents), len(found)))

# What ties them together: the DaemonSet's broker serves the socket whose directory it shares with
# the host, its init container writes the CDI specification naming the shims it copies to the host,
# and the runner pod asks for a device of that specification on the nodes the broker runs on.
by_kind = {d["kind"]: d for d in broker_manifest}
daemon_set = by_kind["DaemonSet"]["spec"]["template"]["spec"]
host_paths = {v["name"]: v["hostPath"]["path"] for v in daemon_set["volumes"] if "hostPath" in v}
broker = daemon_set["containers"][0]
init = " ".join(daemon_set["initContainers"][0]["command"])
if "--socket=/run/gpu-broker/broker.sock" not in broker["command"]:
    fail("the broker does not serve /run/gpu-broker/broker.sock: %s" % broker["command"])
socket_mounts = [m for m in broker["volumeMounts"] if m["mountPath"] == "/run/gpu-broker"]
if not socket_mounts or host_paths.get(socket_mounts[0]["name"]) != "/run/gpu-broker":
    fail("the broker's socket directory is not the host's /run/gpu-broker (which the CDI specification mounts)")
shim_dir = re.search(r"--shim-dir=(\S+)", init)
init_mounts = {m["mountPath"]: m["name"] for m in daemon_set["initContainers"][0]["volumeMounts"]}
if not shim_dir or host_paths.get(init_mounts.get(shim_dir.group(1))) != shim_dir.group(1):
    fail("the CDI specification's --shim-dir is not the host directory the init container copies the shims to")
if "cdi-spec" not in init or host_paths.get(init_mounts.get("/etc/cdi")) != "/etc/cdi" or "/etc/cdi/gpubroker.yaml" not in init:
    fail("the init container does not write /etc/cdi/gpubroker.yaml on the host")
if "driver = cuda" not in by_kind["ConfigMap"]["data"]["gpu-broker.conf"]:
    fail("the broker's config does not insist on the real driver (a sim broker on a GPU node would pass unnoticed)")
pod = runner_manifest[0]
if pod["spec"].get("nodeSelector") != by_kind["DaemonSet"]["spec"]["template"]["spec"].get("nodeSelector"):
    fail("the runner pod is not placed on the nodes the broker runs on")
requested = [line.strip()[2:] for value in pod["metadata"].get("annotations", {}).values() for line in value.splitlines()
             if line.strip().startswith("- ")]
if not requested or not all(CDI_DEVICE.match(d) and d.startswith("gpubroker.io/gpu=") for d in requested):
    fail("the runner pod asks for no gpubroker.io/gpu device: %s" % requested)
for container in pod["spec"]["containers"]:
    if any(k.startswith("nvidia.com/") for part in ("limits", "requests")
           for k in (container.get("resources", {}).get(part) or {})):
        fail("the runner pod asks for NVIDIA's GPUs besides the broker's")
with open(os.path.join(SOURCE, "README.md")) as f:
    readme = f.read()
pod_text = open(os.path.join(KUBERNETES, "runner-pod.yaml")).read()
pod_body = pod_text[pod_text.index("apiVersion:"):]
if pod_body not in readme:
    fail("README.md does not show dist/kubernetes/runner-pod.yaml as it is (from its apiVersion line on)")

# The checker itself: each broken copy must be refused.
def broken(mutate):
    documents = copy.deepcopy(broker_manifest)
    mutate({d["kind"]: d for d in documents})
    return manifest_problems(documents, "broken")

cases = {
    "an unknown field": lambda d: d["DaemonSet"]["spec"]["template"]["spec"].update(contianers=[]),
    "a container without a name": lambda d: d["DaemonSet"]["spec"]["template"]["spec"]["containers"][0].pop("name"),
    "a selector that selects nothing": lambda d: d["DaemonSet"]["spec"]["selector"]["matchLabels"].update(app="other"),
    "a mount of an undeclared volume": lambda d: d["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]
        ["volumeMounts"].append({"name": "nowhere", "mountPath": "/x"}),
    "a command that is not a list": lambda d: d["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]
        .update(command="gpu-broker"),
    "a relative host path": lambda d: d["DaemonSet"]["spec"]["template"]["spec"]["volumes"][1]["hostPath"]
        .update(path="run/gpu-broker"),
    "an unknown kind": lambda d: d["Namespace"].update(kind="Namespaces"),
}
for what, mutate in cases.items():
    found = broken(mutate)
    if not found:
        fail("the check accepts manifests with %s" % what)
    else:
        print("refused with %s: %s" % (what, found[0]))

print("%d failure(s)" % failures)
sys.exit(1 if failures else 0)
