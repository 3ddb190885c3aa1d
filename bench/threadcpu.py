#!/usr/bin/env python3
"""Per-thread CPU time of a process tree, sampled from /proc.

  threadcpu.py OUT ROOT_PID [INTERVAL]

Every INTERVAL seconds (default 0.2) it walks the descendants of ROOT_PID
and records each thread's user+system time; when ROOT_PID is gone it writes
to OUT, one line per thread that used at least 1% of the wall time:

  <process> <thread> <cpu seconds> <lifetime seconds> <busy %>

Busy % is CPU time over the thread's observed lifetime: a thread near 100%
is saturated and limits a pipeline that waits for it. Threads are named by
their process and by their order of creation ("main" is the first thread;
std/rayon threads are unnamed, so "t1", "t2"... follow creation order).
Times are accurate to about one interval.
"""

import os
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(path):
    with open(path) as f:
        s = f.read()
    comm = s[s.index("(") + 1 : s.rindex(")")]
    rest = s[s.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime is field 14, stime 15, ppid 4
    return comm, int(rest[1]), int(rest[11]) + int(rest[12])


def children(root):
    """PIDs of ROOT and all its descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            _, ppid, _ = stat_fields(f"/proc/{d}/stat")
        except (OSError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def main():
    out, root = sys.argv[1], int(sys.argv[2])
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2
    seen = {}  # (pid, tid) -> [comm, cpu ticks, first, last]
    pcomm = {}
    while os.path.exists(f"/proc/{root}"):
        now = time.monotonic()
        for pid in children(root):
            try:
                pcomm[pid] = stat_fields(f"/proc/{pid}/stat")[0]
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for t in tids:
                try:
                    comm, _, cpu = stat_fields(f"/proc/{pid}/task/{t}/stat")
                except (OSError, ValueError):
                    continue
                e = seen.setdefault((pid, int(t)), [comm, 0, now, now])
                e[1], e[3] = cpu, now
        time.sleep(interval)
    lines = []
    by_pid = {}
    for (pid, tid), e in sorted(seen.items()):
        by_pid.setdefault(pid, []).append((tid, e))
    for pid, threads in by_pid.items():
        name = pcomm.get(pid, "?")
        for n, (tid, (comm, ticks, first, last)) in enumerate(threads):
            cpu = ticks / TICK
            life = max(last - first, interval)
            if cpu < 0.01 * life and cpu < 0.05:
                continue
            label = "main" if tid == pid else f"t{n}"
            lines.append(f"{name} {label} {cpu:.2f} {life:.2f} {100 * min(cpu / life, 1.0):.0f}")
    with open(out, "w") as f:
        f.write("\n".join(lines) + ("\n" if lines else ""))


if __name__ == "__main__":
    main()
