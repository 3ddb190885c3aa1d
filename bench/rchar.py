#!/usr/bin/env python3
"""Run a command; print its wall time, CPU and the bytes it read.

usage: bench/rchar.py OUTFILE CMD [ARGS...]

Writes key=value lines to OUTFILE: wall (s), user and sys (s, the command
and the children it waited for, e.g. sparsebak's agent), rchar (bytes the
command's own process read with read/pread, from /proc/PID/io, taken after
it exited and before it is reaped), read_bytes (of those, what reached the
storage layer). The command's stdout and stderr pass through. Exits with the
command's status.
"""
import os
import subprocess
import sys
import time


def main():
    out, cmd = sys.argv[1], sys.argv[2:]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd)
    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
    wall = time.monotonic() - t0
    io = {}
    with open(f"/proc/{p.pid}/io") as f:
        for line in f:
            k, v = line.split(":")
            io[k] = int(v)
    _, status, ru = os.wait4(p.pid, 0)
    with open(out, "w") as f:
        f.write(f"wall={wall:.3f}\nuser={ru.ru_utime:.2f}\nsys={ru.ru_stime:.2f}\n")
        f.write(f"rchar={io['rchar']}\nread_bytes={io['read_bytes']}\n")
        f.write(f"max_rss_kib={ru.ru_maxrss}\n")
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
