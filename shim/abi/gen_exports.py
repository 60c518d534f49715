#!/usr/bin/env python3
"""Generates, for one shim library, the linker version script and the stubs of what it lacks.

Inputs: the exports of the real runtime (cudart12.symbols or cudart13.symbols beside this file,
one name a line) and the names the shim implements. Outputs:

  --version-script FILE   libcudart.so.N { global: <every export>; local: *; };
  --stubs FILE            C++: one GPUBROKER_UNSUPPORTED_CUDA_FUNCTION(name) per export that
                          the shim does not implement (see unsupported.h): it logs the name once
                          per process and returns cudaErrorNotSupported (801).

The implemented names come from text files (--implemented, repeatable: one name a line, '#'
comments) and/or from compiled code (--implemented-nm, repeatable: an object file or static
archive whose defined global functions are read with nm), so the list can never drift from what
the build actually compiled. A name in a text list that is no export of this runtime is an error
(a typo would otherwise silently become a stub), unless it is an export of the other major version
(--known, e.g. the shared list names cudaGetDeviceProperties_v2 for 12 and cudaLogsCurrent for 13).

A per-thread-default-stream export (name_ptsz, name_ptds) whose plain function the shim implements
is not stubbed but written as GPUBROKER_PER_THREAD_ALIAS(name_ptsz, name): a jump to the plain
function, since the session's default stream stands for the legacy and per-thread streams alike.
So no shim writes such forwarders by hand, and a newly served function gets its aliases for free.

Why a stub can be `int name()` whatever the real signature (x86-64 System V): the caller puts the
arguments in registers and on its own stack and removes them itself, so a callee that ignores them
is harmless, and every function that returns cudaError_t returns it in eax, where the stub puts
801. A void function's caller ignores eax, so stubbing those is ABI-safe too. It is NOT safe for
functions returning a pointer, a struct or a non-error integer: the caller would use 801 as an
address, read uninitialized memory, or take 801 as a meaningful answer. Measured on the headers
of 12.9.79 and 13.0.96 (decltype of every exported name), the only cuda* exports that do not
return cudaError_t are cudaGetErrorName and cudaGetErrorString (const char*) and
cudaCreateChannelDesc (a 20-byte struct returned through a hidden pointer); MUST_IMPLEMENT below
lists them with the __cuda* registration entry points that return something other than
cudaError_t or void. The generator refuses to stub any of them.

Other libraries (libcublas, libcuda, libnvidia-ml) use the same generator with their own status
type: --error-value (e.g. 15, CUBLAS_STATUS_NOT_SUPPORTED), --error-name and --library say what
the stubs return and how their log line names the shim, and --must-implement names a file of
that library's exports whose return type is not the status type (one name a line; the comment
says the type), which the generator likewise refuses to stub. --node '' writes an anonymous
version script (unversioned exports, as libcuda.so.1 and libnvidia-ml.so.1 have). Without these
options the outputs are the libcudart ones, unchanged.
"""

import argparse
import subprocess
import sys
from pathlib import Path

# Exports whose return value makes a stub wrong: the shim must implement each one that its
# runtime's symbols file lists. Value: the return type and what a stub would break.
MUST_IMPLEMENT = {
    "cudaGetErrorName": "const char*: the caller would read address 801",
    "cudaGetErrorString": "const char*: the caller would read address 801",
    "cudaCreateChannelDesc": "struct cudaChannelFormatDesc returned in memory: left uninitialized",
    "__cudaRegisterFatBinary": "void**: the module handle every registration call passes back",
    "__cudaInitModule": "char: 801 truncates to a nonzero 'initialized' answer",
    "__cudaPushCallConfiguration": "unsigned: nonzero makes nvcc's launch skip the kernel silently",
}

# Exports a stub serves correctly at the ABI level (they return void, or nothing is known of them)
# but that every nvcc-built program calls: named in the stubs file so that a reader sees them.
_VOID = "returns void: a stub is ABI-safe, but what it should register is lost"
_UNDECLARED = "has no public declaration: return type unknown, so a stub may be unsafe"
VOID_OR_UNDOCUMENTED = {
    "__cudaRegisterFatBinaryEnd": _VOID,
    "__cudaUnregisterFatBinary": _VOID,
    "__cudaRegisterFunction": _VOID,
    "__cudaRegisterVar": _VOID,
    "__cudaRegisterManagedVar": _VOID,
    "__cudaRegisterHostVar": _UNDECLARED,
    "__cudaRegisterUnifiedTable": _UNDECLARED,
    "__cudaGetProcAddress": _UNDECLARED,
}


class GeneratorError(Exception):
    pass


def read_names(path):
    """One name a line; blank lines and '#' comments ignored."""
    names = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise GeneratorError(f"{path}:{number}: not a C identifier: {name!r}")
        names.append(name)
    return names


def defined_functions(object_path, nm):
    """Names of the global functions defined in an object file or static archive."""
    result = subprocess.run([nm, "--defined-only", "--extern-only", "--format=posix", object_path],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise GeneratorError(f"{nm} {object_path} failed: {result.stderr.strip()}")
    names = set()
    for line in result.stdout.splitlines():
        fields = line.split()
        # "name type value size"; archive member headers ("lib.a[x.o]:") have no type field.
        if len(fields) >= 2 and fields[1] in ("T", "W", "i"):
            names.add(fields[0])
    return names


def version_script(node, symbols, source_name):
    lines = [f"/* Generated by shim/abi/gen_exports.py from {source_name}: do not edit. */",
             f"{node} {{" if node else "{", "  global:"]
    lines += [f"    {name};" for name in symbols]
    lines += ["  local: *;", "};", ""]
    return "\n".join(lines)


def per_thread_base(name):
    """The plain function of a per-thread-default-stream entry point (cudaMemcpy_ptds ->
    cudaMemcpy), or None for any other name."""
    for suffix in ("_ptsz", "_ptds"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def stubs_source(symbols, implemented, source_name, status=None):
    """status: None for libcudart, else (error value, error name, library label)."""
    missing = [name for name in symbols if name not in implemented]
    aliases = sum(1 for name in missing if per_thread_base(name) in implemented)
    error_name = "cudaErrorNotSupported" if status is None else status[1]
    lines = [
        f"// Generated by shim/abi/gen_exports.py from {source_name}: do not edit.",
        f"// {len(symbols)} exports, {len(symbols) - len(missing)} implemented by the shim, {aliases} "
        f"per-thread-stream aliases of",
        f"// implemented functions; the other {len(missing) - aliases} below log their name once per process "
        f"and return {error_name}.",
        '#include "shim/abi/unsupported.h"',
        "",
    ]
    for name in missing:
        base = per_thread_base(name)
        if base is not None and base in implemented:
            lines.append(f"GPUBROKER_PER_THREAD_ALIAS({name}, {base})")
            continue
        note = VOID_OR_UNDOCUMENTED.get(name)
        if note:
            lines.append(f"// {name} {note}.")
        if status is None:
            lines.append(f"GPUBROKER_UNSUPPORTED_CUDA_FUNCTION({name})")
        else:
            lines.append(f'GPUBROKER_UNSUPPORTED_FUNCTION({name}, {status[0]}, "{status[2]}", "{status[1]}")')
    lines.append("")
    return "\n".join(lines)


def generate(args):
    symbols = read_names(args.symbols)
    if len(set(symbols)) != len(symbols):
        raise GeneratorError(f"{args.symbols}: a name is listed twice")
    exported = set(symbols)
    known = set()
    for path in args.known:
        known.update(read_names(path))

    implemented = set()
    for path in args.implemented:
        for name in read_names(path):
            if name not in exported and name not in known:
                others = "".join(f" nor by {Path(k).name}" for k in args.known)
                raise GeneratorError(
                    f"{path}: {name} is not exported by {Path(args.symbols).name}{others}")
            implemented.add(name)
    for path in args.implemented_nm:
        implemented.update(defined_functions(path, args.nm) & exported)

    must_implement = dict(MUST_IMPLEMENT)
    for path in args.must_implement:
        for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
            name, _, reason = line.partition("#")
            name = name.strip()
            if name:
                if name not in exported and name not in known:
                    raise GeneratorError(f"{path}:{number}: {name} is not exported by {Path(args.symbols).name}")
                must_implement[name] = reason.strip() or "returns something other than the status type"
    unstubbable = sorted(n for n in must_implement if n in exported and n not in implemented)
    if unstubbable:
        reasons = "\n".join(f"  {n}: {must_implement[n]}" for n in unstubbable)
        raise GeneratorError(
            "these exports cannot be stubbed; the shim must implement them:\n" + reasons)

    source_name = Path(args.symbols).name
    Path(args.version_script).write_text(version_script(args.node, symbols, source_name))
    status = None
    if args.error_value is not None:
        status = (args.error_value, args.error_name or str(args.error_value), args.library or "CUDA")
    Path(args.stubs).write_text(stubs_source(symbols, implemented & exported, source_name, status))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", required=True, help="exports of the real runtime, one a line")
    parser.add_argument("--node", required=True, help="version node, e.g. libcudart.so.13")
    parser.add_argument("--implemented", action="append", default=[],
                        help="text file of implemented names (repeatable)")
    parser.add_argument("--implemented-nm", action="append", default=[],
                        help="object or archive whose defined functions count as implemented")
    parser.add_argument("--known", action="append", default=[],
                        help="another version's symbols file: its names may be --implemented")
    parser.add_argument("--nm", default="nm", help="nm program for --implemented-nm")
    parser.add_argument("--must-implement", action="append", default=[],
                        help="file of exports a stub would break (not the status type); repeatable")
    parser.add_argument("--error-value", type=int, default=None,
                        help="what a stub returns (default: libcudart's cudaErrorNotSupported)")
    parser.add_argument("--error-name", default=None, help="the name of --error-value, for the log")
    parser.add_argument("--library", default=None, help="the shim's name in the log line")
    parser.add_argument("--version-script", required=True, help="output: linker version script")
    parser.add_argument("--stubs", required=True, help="output: C++ source of the stubs")
    args = parser.parse_args(argv)
    try:
        generate(args)
    except (GeneratorError, OSError) as error:
        print(f"gen_exports.py: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
