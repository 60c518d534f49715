#!/usr/bin/env python3
"""Writes the seeds of request_fuzz.cc into tests/fuzz/request_corpus: one well-formed session per
area (memory and copies, streams and events, graphs, modules and launches, cuBLAS, VMM, the host
arena, host functions, the transport kinds), in the input format request_fuzz.cc describes.

Kinds, payload bounds and staging ways come from the call table itself: the first argument is the
call_table program the build makes (tests/fuzz/call_table.cc), which prints every row. A payload
that does not fit its row, or staged bytes that flow against it, stop the script. With --check DIR
nothing is written: the seeds are compared with DIR's, and any difference fails (the suite runs it,
so a change to the table cannot leave the committed seeds behind). Payload layouts follow
include/gpubroker/calls/cuda_calls.h."""
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SLOT, HEADER = 256, 32
SYNC = 1


class Row:
    def __init__(self, line):
        name, kind, low, high, staging, posting = line.split("\t")
        self.name, self.kind, self.low, self.high = name, int(kind), int(low), int(high)
        self.staging, self.posting = staging, posting


def read_table(program):
    lines = subprocess.run([program], check=True, capture_output=True, text=True).stdout.splitlines()
    return {row.name: row for row in map(Row, lines)}


if len(sys.argv) not in (2, 4) or (len(sys.argv) == 4 and sys.argv[2] != "--check"):
    sys.exit("usage: make_request_corpus.py CALL_TABLE_PROGRAM [--check DIR]")
TABLE = read_table(sys.argv[1])
CHECK_DIR = sys.argv[3] if len(sys.argv) == 4 else None
differences = []


def R(index, offset=0):
    """A device address the harness relocates: the index-th address the session got, plus offset."""
    return (0x5EED << 48) | (index << 40) | offset


class Session:
    def __init__(self):
        self.slots, self.staged, self.sequence = [], b"", 0

    def add(self, name, payload=b"", staged=b"", staged_back=0, sync=True):
        row = TABLE[name]
        if not row.low <= len(payload) <= row.high:
            sys.exit(f"{name}: a payload of {len(payload)} bytes, the row allows {row.low} to {row.high}")
        if (staged and row.staging != "to_broker") or (staged_back and row.staging != "from_broker"):
            sys.exit(f"{name}: staged bytes flow {row.staging} in the table")
        if not sync and row.posting != "may_post":
            sys.exit(f"{name}: the table says a client never posts it (the broker closes the session)")
        self.sequence += 1
        staged_bytes = len(staged) or staged_back
        header = struct.pack("<QHHHHIIQ", 0, row.kind, SYNC if sync else 0, 0, len(payload), self.sequence, 0, staged_bytes)
        self.slots.append((header + payload).ljust(SLOT, b"\0"))
        self.staged += staged
        return self

    def write(self, name):
        content = b"".join(self.slots) + self.staged
        if CHECK_DIR is not None:
            path = os.path.join(CHECK_DIR, name)
            if not os.path.exists(path) or open(path, "rb").read() != content:
                differences.append(name)
            return
        with open(os.path.join(HERE, "request_corpus", name), "wb") as out:
            out.write(content)


def launch(function, grid, block, stream, params):
    return struct.pack("<Q3I3IIIQ", function, *grid, *block, 0, len(params), stream) + params


fatbin = open(os.path.join(HERE, "..", "data", "fatbin", "kernels_sm90_raw.fatbin"), "rb").read()
kernel = b"_Z8scale_byIfEvPT_S0_i"
data = bytes((i * 7 + 3) & 0xFF for i in range(4096))

s = Session()
s.add("MemAlloc", struct.pack("<IIQ", 0, 0, 65536))
s.add("CopyHostToDevice", struct.pack("<QQQQ", R(0), 0, 4096, 0), staged=data)
s.add("Memset", struct.pack("<QQQII", R(0, 100), 50, 0, 0xAB, 0))
s.add("CopyDeviceToDevice", struct.pack("<QQQQ", R(0, 8192), R(0), 4096, 0))
s.add("CopyDeviceToHost", struct.pack("<QQQQ", 0, R(0, 8192), 4096, 0), staged_back=4096)
s.add("MemGetInfo", struct.pack("<II", 0, 0))
s.add("MemFree", struct.pack("<Q", R(0)))
s.write("memory_and_copies")

s = Session()
s.add("StreamCreate", struct.pack("<QIi", 5, 1, 0)).add("EventCreate", struct.pack("<QII", 6, 0, 0))
s.add("MemAlloc", struct.pack("<IIQ", 0, 0, 4096))
s.add("Memset", struct.pack("<QQQII", R(0), 4096, 5, 1, 0))
s.add("EventRecord", struct.pack("<QQ", 6, 5)).add("StreamWaitEvent", struct.pack("<QQ", 6, 0)).add("EventQuery", struct.pack("<Q", 6))
s.add("StreamSynchronize", struct.pack("<Q", 5)).add("EventSynchronize", struct.pack("<Q", 6)).add("EventElapsedTime", struct.pack("<QQ", 6, 6))
s.add("StreamQuery", struct.pack("<Q", 5)).add("ContextSynchronize").add("EventDestroy", struct.pack("<Q", 6)).add("StreamDestroy", struct.pack("<Q", 5))
s.write("streams_and_events")

s = Session()
s.add("MemAlloc", struct.pack("<IIQ", 0, 0, 4096)).add("StreamCreate", struct.pack("<QIi", 3, 1, 0))
s.add("StreamBeginCapture", struct.pack("<QQ", 3, 0)).add("StreamIsCapturing", struct.pack("<Q", 3))
s.add("Memset", struct.pack("<QQQII", R(0), 64, 3, 7, 0))
s.add("StreamEndCapture", struct.pack("<QQ", 3, 11)).add("GraphInstantiate", struct.pack("<QQ", 11, 12)).add("GraphLaunch", struct.pack("<QQ", 12, 3))
s.add("GraphExecUpdate", struct.pack("<QQ", 12, 11)).add("StreamSynchronize", struct.pack("<Q", 3))
s.add("GraphExecDestroy", struct.pack("<Q", 12)).add("GraphDestroy", struct.pack("<Q", 11))
s.write("graphs")

s = Session()
s.add("MemAlloc", struct.pack("<IIQ", 0, 0, 4096))
s.add("ModuleLoad", struct.pack("<Q", 1), staged=fatbin)
s.add("ModuleGetFunction", struct.pack("<QQ", 1, 2), staged=kernel)
s.add("FuncGetAttributes", struct.pack("<Qii", 2, 0, 0))
s.add("Occupancy", struct.pack("<QiIQ", 2, 256, 0, 0))
s.add("LaunchKernel", launch(2, (1, 1, 1), (256, 1, 1), 0, struct.pack("<QfiI", R(0), 2.0, 256, 0)[:16]))
s.add("ModuleGetGlobal", struct.pack("<Q", 1), staged=b"no_such_global")
s.add("SessionError", staged_back=256)  # the session's sticky error, if a launch above failed
s.add("ModuleUnload", struct.pack("<Q", 1))
s.write("modules_and_launches")

s = Session()
s.add("MemAlloc", struct.pack("<IIQ", 0, 0, 3 * 1024))
s.add("BlasCreate", struct.pack("<Q", 4)).add("BlasSetStream", struct.pack("<QQ", 4, 0)).add("BlasSetMathMode", struct.pack("<QQ", 4, 0))
gemm = struct.pack("<Q14iII3Q3q8s8s", 4, 0, 0, 16, 16, 16, 0, 0, 0, 68, -1, 16, 16, 16, 1, 0, 0,
                   R(0), R(0, 1024), R(0, 2048), 0, 0, 0, struct.pack("<f", 1.0).ljust(8, b"\0"), bytes(8))
s.add("BlasGemm", gemm)
s.add("BlasSetWorkspace", struct.pack("<QQQ", 4, R(0, 2048), 1024))
s.add("BlasDestroy", struct.pack("<Q", 4))


def lt_layout(rows, cols, ld):
    return struct.pack("<IiiiiIq", 0, rows, cols, ld, 1, 0, 0)


# cublasLtMatmul, 16x16 FP32 with the bias and ReLU epilogue (6); the bias is the last 64 bytes.
lt = struct.pack("<Q5Q6iq", 0, R(0), R(0, 1024), R(0, 2048), R(0, 2048), R(0, 3 * 1024 - 64), 68, 0, 0, 0, 6, 0, 0)
lt += lt_layout(16, 16, 16) * 4 + struct.pack("<f", 1.0).ljust(8, b"\0") + bytes(8)
assert len(lt) == 224
s.add("BlasLtMatmul", lt)
s.write("blas")

s = Session()
s.add("VmmGranularity", struct.pack("<Ii", 0, 0))
s.add("VmmAddressReserve", struct.pack("<QQQQ", 2 << 20, 0, 0, 0))
s.add("VmmCreate", struct.pack("<QIiQ", 2 << 20, 0, 0, 0))
s.add("VmmMap", struct.pack("<QQQQQ", R(0), 2 << 20, 0, 1, 0))
s.add("VmmSetAccess", struct.pack("<QQII", R(0), 2 << 20, 1, 0) + struct.pack("<iIi", 1, 0, 3) + bytes(36))
s.add("Memset", struct.pack("<QQQII", R(0, 4096), 4096, 0, 9, 0))
s.add("VmmUnmap", struct.pack("<QQ", R(0), 2 << 20)).add("VmmRelease", struct.pack("<Q", 1)).add("VmmAddressFree", struct.pack("<QQ", R(0), 2 << 20))
s.write("vmm")

s = Session()
s.add("MemAlloc", struct.pack("<IIQ", 0, 0, 8192))
s.add("ArenaRegister", struct.pack("<QQ", 0, 8192))
s.add("CopyArenaToDevice", struct.pack("<QQQQ", R(0), 0, 8192, 0)).add("CopyDeviceToArena", struct.pack("<QQQQ", 0, R(0), 4096, 0))
s.add("ArenaChecksum", struct.pack("<QQ", 0, 8192))
s.add("ArenaUnregister", struct.pack("<QQ", 0, 0))
s.write("host_arena")

s = Session()
s.add("StreamCreate", struct.pack("<QIi", 8, 0, 0))
s.add("HostFuncEnqueue", struct.pack("<QQ", 8, 77)).add("HostFuncWait").add("StreamSynchronize", struct.pack("<Q", 8))
s.add("DeviceLimit", struct.pack("<iIQ", 1, 1, 4096))
s.write("host_functions_and_limits")

# The calls added through the table in issue 15: flags, priorities, an event record with flags, and
# a 4 x 3 float matrix set and read back with leading dimension 8.
s = Session()
s.add("MemAlloc", struct.pack("<IIQ", 0, 0, 8 * 3 * 4))
s.add("StreamCreate", struct.pack("<QIi", 9, 1, -2)).add("EventCreate", struct.pack("<QII", 10, 0, 0))
s.add("StreamGetFlags", struct.pack("<Q", 9)).add("StreamGetPriority", struct.pack("<Q", 9))
s.add("EventRecordWithFlags", struct.pack("<QQII", 10, 9, 1, 0), sync=False)
matrix = b"".join(struct.pack("<f", float(i)) for i in range(12))
s.add("BlasSetMatrix", struct.pack("<QQqqqiI", R(0), 9, 4, 3, 8, 4, 0), staged=matrix)
s.add("BlasGetMatrix", struct.pack("<QQqqqiI", R(0), 9, 4, 3, 8, 4, 0), staged_back=len(matrix))
s.add("EventSynchronize", struct.pack("<Q", 10))
s.write("table_additions")

# BLAS-1 on a float vector: axpy with alpha by value, a dot whose result comes back in the reply,
# and an amax written to device memory (device pointer mode); then a batched LU.
s = Session()
s.add("MemAlloc", struct.pack("<IIQ", 0, 0, 64 * 4)).add("BlasCreate", struct.pack("<Q", 11))
def blas_vector(function, n, incx, incy, y, result, alpha=0.0):
    return struct.pack("<QIiiiiIQQQ8s", 11, function, 0, n, incx, incy, 0, R(0), y, result, struct.pack("<f", alpha).ljust(8, b"\0"))
s.add("BlasVector", blas_vector(0, 16, 2, -1, R(0, 4), 0, 0.5))
s.add("BlasVector", blas_vector(2, 16, 1, 2, R(0, 4), 0))
s.add("BlasVector", blas_vector(5, 32, 2, 0, 0, R(0, 252)))
# getrf, getrs and getri of one 4 x 4 matrix whose pointer arrays are device memory (their contents
# unset: refused).
def blas_lu(function, trans, nrhs, b, info):
    return struct.pack("<QIiiiiiiiQQQQ", 11, function, 0, trans, 4, nrhs, 4, 4, 1, R(0), b, R(0, 128), info)
s.add("BlasLuBatched", blas_lu(0, 0, 0, 0, R(0, 192)))
s.add("BlasLuBatched", blas_lu(1, 1, 2, R(0, 64), 0))
s.add("BlasLuBatched", blas_lu(2, 0, 0, R(0, 64), R(0, 192)))
s.add("BlasDestroy", struct.pack("<Q", 11))
s.write("blas_vector")

s = Session()
s.add("Null").add("Echo", b"hello").add("StageChecksum", staged=data).add("StagePattern", struct.pack("<Q", 42), staged_back=1000).add("StageToScratch", staged=data).add("StageFromScratch", staged_back=4096)
s.write("transport")

if differences:
    sys.exit("these seeds differ from what the call table makes now; run "
             "tests/fuzz/make_request_corpus.py build/tests/fuzz/call_table: " + ", ".join(differences))
