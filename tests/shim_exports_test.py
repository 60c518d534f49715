#!/usr/bin/env python3
"""Checks that the shim libraries together export every symbol a real client imports.

  shim_exports_test.py [--node NODE] IMPORTS LIBRARY...

IMPORTS is the undefined-symbol list of a real client (tests/data/ggml-cuda13-imports.txt: ggml's
libggml-cuda.so built with CUDA 13), one `name@node` or bare `name` a line. Each must be a defined
function of one of the LIBRARIES, in that version node (`name@@node`, the default version, which
is what the dynamic linker binds an import of `name@node` to), or unversioned for a bare name.
Read with `nm -D --defined-only`, as the dynamic linker sees the libraries.

With --node, every bare name in IMPORTS must be in that node: the check that a shim exports every
name of its library's symbols file (shim/abi/*.symbols, '#' comments allowed) where it belongs.
"""
import subprocess
import sys


def exports(library):
    out = subprocess.run(["nm", "-D", "--defined-only", library], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) != 3 or fields[1] not in ("T", "W", "i"):
            continue
        name, _, node = fields[2].partition("@@")
        if "@" in name:  # a hidden, non-default version: not what an import binds to
            continue
        found[name] = node
    return found


def main(argv):
    default_node = ""
    if len(argv) > 2 and argv[1] == "--node":
        default_node = argv[2]
        argv = argv[:1] + argv[3:]
    if len(argv) < 3:
        print(__doc__)
        return 2
    defined = {}
    for library in argv[2:]:
        for name, node in exports(library).items():
            defined.setdefault(name, []).append((node, library))
    wanted = []
    for line in open(argv[1]):
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, node = line.partition("@")
            wanted.append((name, node or default_node))
    missing = []
    for name, node in wanted:
        if not any(have == node for have, _ in defined.get(name, [])):
            have = ", ".join(f"{n or '(unversioned)'} in {lib}" for n, lib in defined.get(name, [])) or "nowhere"
            missing.append(f"{name}@{node or '(unversioned)'}: defined {have}")
    for line in missing:
        print("missing:", line)
    print(f"{len(wanted) - len(missing)} passed, {len(missing)} failed")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
