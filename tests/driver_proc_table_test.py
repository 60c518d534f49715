#!/usr/bin/env python3
"""Every driver API function libcuda.so.1 implements is one cuGetProcAddress can hand out.

  driver_proc_table_test.py NM LIBCUDA_DRIVER_IMPL.a DRIVER.CC

The implemented functions are the cu* symbols the driver shim's objects define (as the export
generator finds them); the table is kProcs in shim/driver/driver.cc. A function missing from the
table would be reachable by name from a program but not from a runtime that looks it up.
"""
import re
import subprocess
import sys

nm, archive, source = sys.argv[1:4]
defined = subprocess.run([nm, "-g", "--defined-only", archive], check=True, capture_output=True, text=True).stdout
implemented = {line.split()[2] for line in defined.splitlines() if len(line.split()) == 3 and line.split()[1] == "T"
               and line.split()[2].startswith("cu")}
table = re.findall(r'\{"(cu\w+)", (\d+), "(\w*)"\}', open(source).read())
served = {symbol for _, _, symbol in table if symbol}
missing = sorted(implemented - served)
stale = sorted(served - implemented)
if missing:
    print("FAILED: implemented but not in cuGetProcAddress's table:", ", ".join(missing))
if stale:
    print("FAILED: in cuGetProcAddress's table but not implemented:", ", ".join(stale))
if len(implemented) < 100:
    print(f"FAILED: only {len(implemented)} implemented functions found in {archive}")
    sys.exit(1)
if missing or stale:
    sys.exit(1)
print(f"PASSED: all {len(implemented)} implemented driver functions are in the table of {len(table)} rows")
