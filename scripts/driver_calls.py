#!/usr/bin/env python3
"""Only the broker's device layer calls the CUDA driver, cuBLAS and cuBLASLt (docs/architecture.md).

The layer's own files (broker/device*) hold the tables of function pointers the libraries were
resolved into; every other part of the broker reaches them through a DeviceContext, whose calls
make their context current first. This check reads the broker's sources and fails, naming the file
and the line, where a file outside the device layer names one of those tables or makes a context
current itself: either would let a call run in whichever context the thread happened to have.

  driver_calls.py check ROOT     the tree at ROOT keeps to the rule
  driver_calls.py self-test      the check finds what a small planted tree breaks
"""
import os
import re
import sys
import tempfile

# What only the device layer may name: the resolved tables, and the raw ways to change a thread's
# current context.
FORBIDDEN = re.compile(r"\b(DriverTables?|CublasTable|CublasLtTable|ctx_set_current|ctx_get_current|"
                       r"primary_ctx_retain|cuCtxSetCurrent)\b")
COMMENT = re.compile(r"//.*$")


def in_device_layer(relative):
    return os.path.basename(relative).startswith("device")


def violations(root):
    broker = os.path.join(root, "broker")
    found = []
    for name in sorted(os.listdir(broker)):
        if not name.endswith((".h", ".cc")) or in_device_layer(name):
            continue
        with open(os.path.join(broker, name), encoding="utf-8") as source:
            for number, line in enumerate(source, 1):
                match = FORBIDDEN.search(COMMENT.sub("", line))
                if match:
                    found.append("broker/%s:%d: names %s, which only the device layer (broker/device*) may use; "
                                 "call through a DeviceContext instead" % (name, number, match.group(1)))
    return found


def check(root):
    found = violations(root)
    for line in found:
        print(line)
    print("driver calls: %d line(s) outside the device layer break the rule" % len(found) if found
          else "driver calls: every call outside broker/device* goes through a DeviceContext")
    return 1 if found else 0


def self_test():
    """A tree with one planted fault of each kind, and one clean file: the check must name exactly
    the faults."""
    planted = {
        "broker/session_bad.cc": "void f(const cuda::DriverTable& t) { t.mem_alloc(nullptr, 1); }\n",
        "broker/session_switch.cc": "void g(const T& d) { d.ctx_set_current(c); }\n",
        "broker/session_good.cc": "// a comment may say DriverTable\nvoid h(const DeviceContext& c) { c.mem_free(0); }\n",
        "broker/device_layer.cc": "cuda::DriverTable table; void i() { table.ctx_set_current(c); }\n",
    }
    with tempfile.TemporaryDirectory() as root:
        for path, text in planted.items():
            os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
            with open(os.path.join(root, path), "w", encoding="utf-8") as out:
                out.write(text)
        found = violations(root)
    named = sorted(line.split(":")[0] for line in found)
    expected = ["broker/session_bad.cc", "broker/session_switch.cc"]
    if named != expected:
        print("self-test: the check named %s, expected %s" % (named, expected))
        return 1
    print("self-test: the check names the two planted faults and nothing else")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2]))
    if len(sys.argv) == 2 and sys.argv[1] == "self-test":
        sys.exit(self_test())
    print(__doc__)
    sys.exit(2)
