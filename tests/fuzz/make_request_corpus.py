#!/usr/bin/env python3
"""Writes the seeds of request_fuzz.cc into tests/fuzz/request_corpus: one well-formed session per
area (memory and copies, streams and events, graphs, modules and launches, cuBLAS, VMM, the host
arena, host functions, the transport kinds), in the input format request_fuzz.cc describes.
Layouts follow include/gpubroker/wire/protocol.h. Run it again after a layout change."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SLOT, HEADER = 256, 32
SYNC = 1


def R(index, offset=0):
    """A device address the harness relocates: the index-th address the session got, plus offset."""
    return (0x5EED << 48) | (index << 40) | offset


class Session:
    def __init__(self):
        self.slots, self.staged, self.sequence = [], b"", 0

    def add(self, kind, payload=b"", staged=b"", staged_back=0, sync=True):
        self.sequence += 1
        staged_bytes = len(staged) or staged_back
        header = struct.pack("<QHHHHIIQ", 0, kind, SYNC if sync else 0, 0, len(payload), self.sequence, 0, staged_bytes)
        self.slots.append((header + payload).ljust(SLOT, b"\0"))
        self.staged += staged
        return self

    def write(self, name):
        with open(os.path.join(HERE, "request_corpus", name), "wb") as out:
            out.write(b"".join(self.slots) + self.staged)


def launch(function, grid, block, stream, params):
    return struct.pack("<Q3I3IIIQ", function, *grid, *block, 0, len(params), stream) + params


fatbin = open(os.path.join(HERE, "..", "data", "fatbin", "kernels_sm90_raw.fatbin"), "rb").read()
kernel = b"_Z8scale_byIfEvPT_S0_i"
data = bytes((i * 7 + 3) & 0xFF for i in range(4096))

s = Session()
s.add(7, struct.pack("<IIQ", 0, 0, 65536))
s.add(11, struct.pack("<QQQQ", R(0), 0, 4096, 0), staged=data)
s.add(10, struct.pack("<QQQII", R(0, 100), 50, 0, 0xAB, 0))
s.add(13, struct.pack("<QQQQ", R(0, 8192), R(0), 4096, 0))
s.add(12, struct.pack("<QQQQ", 0, R(0, 8192), 4096, 0), staged_back=4096)
s.add(9, struct.pack("<II", 0, 0))
s.add(8, struct.pack("<Q", R(0)))
s.write("memory_and_copies")

s = Session()
s.add(18, struct.pack("<QIi", 5, 1, 0)).add(23, struct.pack("<QII", 6, 0, 0))
s.add(7, struct.pack("<IIQ", 0, 0, 4096))
s.add(10, struct.pack("<QQQII", R(0), 4096, 5, 1, 0))
s.add(25, struct.pack("<QQ", 6, 5)).add(22, struct.pack("<QQ", 6, 0)).add(27, struct.pack("<Q", 6))
s.add(20, struct.pack("<Q", 5)).add(26, struct.pack("<Q", 6)).add(28, struct.pack("<QQ", 6, 6))
s.add(21, struct.pack("<Q", 5)).add(29).add(24, struct.pack("<Q", 6)).add(19, struct.pack("<Q", 5))
s.write("streams_and_events")

s = Session()
s.add(7, struct.pack("<IIQ", 0, 0, 4096)).add(18, struct.pack("<QIi", 3, 1, 0))
s.add(31, struct.pack("<QQ", 3, 0)).add(33, struct.pack("<Q", 3))
s.add(10, struct.pack("<QQQII", R(0), 64, 3, 7, 0))
s.add(32, struct.pack("<QQ", 3, 11)).add(34, struct.pack("<QQ", 11, 12)).add(35, struct.pack("<QQ", 12, 3))
s.add(36, struct.pack("<QQ", 12, 11)).add(20, struct.pack("<Q", 3))
s.add(38, struct.pack("<Q", 12)).add(37, struct.pack("<Q", 11))
s.write("graphs")

s = Session()
s.add(7, struct.pack("<IIQ", 0, 0, 4096))
s.add(39, struct.pack("<Q", 1), staged=fatbin)
s.add(40, struct.pack("<QQ", 1, 2), staged=kernel)
s.add(61, struct.pack("<Qii", 2, 0, 0))
s.add(64, struct.pack("<QiIQ", 2, 256, 0, 0))
s.add(41, launch(2, (1, 1, 1), (256, 1, 1), 0, struct.pack("<QfiI", R(0), 2.0, 256, 0)[:16]))
s.add(65, struct.pack("<Q", 1), staged=b"no_such_global")
s.add(67, staged_back=256)  # the session's sticky error, if a launch above failed
s.add(43, struct.pack("<Q", 1))
s.write("modules_and_launches")

s = Session()
s.add(7, struct.pack("<IIQ", 0, 0, 3 * 1024))
s.add(44, struct.pack("<Q", 4)).add(46, struct.pack("<QQ", 4, 0)).add(47, struct.pack("<QQ", 4, 0))
gemm = struct.pack("<Q14iII3Q3q8s8s", 4, 0, 0, 16, 16, 16, 0, 0, 0, 68, -1, 16, 16, 16, 1, 0, 0,
                   R(0), R(0, 1024), R(0, 2048), 0, 0, 0, struct.pack("<f", 1.0).ljust(8, b"\0"), bytes(8))
s.add(49, gemm)
s.add(48, struct.pack("<QQQ", 4, R(0, 2048), 1024))
s.add(45, struct.pack("<Q", 4))


def lt_layout(rows, cols, ld):
    return struct.pack("<IiiiiIq", 0, rows, cols, ld, 1, 0, 0)


# cublasLtMatmul, 16x16 FP32 with the bias and ReLU epilogue (6); the bias is the last 64 bytes.
lt = struct.pack("<Q5Q6iq", 0, R(0), R(0, 1024), R(0, 2048), R(0, 2048), R(0, 3 * 1024 - 64), 68, 0, 0, 0, 6, 0, 0)
lt += lt_layout(16, 16, 16) * 4 + struct.pack("<f", 1.0).ljust(8, b"\0") + bytes(8)
assert len(lt) == 224
s.add(68, lt)
s.write("blas")

s = Session()
s.add(53, struct.pack("<Ii", 0, 0))
s.add(54, struct.pack("<QQQQ", 2 << 20, 0, 0, 0))
s.add(56, struct.pack("<QIiQ", 2 << 20, 0, 0, 0))
s.add(58, struct.pack("<QQQQQ", R(0), 2 << 20, 0, 1, 0))
s.add(60, struct.pack("<QQII", R(0), 2 << 20, 1, 0) + struct.pack("<iIi", 1, 0, 3) + bytes(36))
s.add(10, struct.pack("<QQQII", R(0, 4096), 4096, 0, 9, 0))
s.add(59, struct.pack("<QQ", R(0), 2 << 20)).add(57, struct.pack("<Q", 1)).add(55, struct.pack("<QQ", R(0), 2 << 20))
s.write("vmm")

s = Session()
s.add(7, struct.pack("<IIQ", 0, 0, 8192))
s.add(16, struct.pack("<QQ", 0, 8192))
s.add(14, struct.pack("<QQQQ", R(0), 0, 8192, 0)).add(15, struct.pack("<QQQQ", 0, R(0), 4096, 0))
s.add(4, struct.pack("<QQ", 0, 8192))
s.add(17, struct.pack("<QQ", 0, 0))
s.write("host_arena")

s = Session()
s.add(18, struct.pack("<QIi", 8, 0, 0))
s.add(50, struct.pack("<QQ", 8, 77), sync=False).add(51).add(20, struct.pack("<Q", 8))
s.add(66, struct.pack("<iIQ", 1, 1, 4096))
s.write("host_functions_and_limits")

s = Session()
s.add(0).add(1, b"hello").add(2, staged=data).add(3, staged_back=1000).add(5, staged=data).add(6, staged_back=4096)
s.write("transport")
