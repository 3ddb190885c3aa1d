#!/usr/bin/env python3
"""List functions longer than a limit in library and binary code.

usage: scripts/fnlen.py [--max N] DIR [...]    (default N = 100)

Counts the lines from a `fn` line to its closing brace. Test code
(`#[cfg(test)]` modules at the end of a file, tests.rs files, tests/
directories) is skipped. Exits 1 if a function is over the limit, unless its
`fn` line or the line before carries the marker `fnlen: allow` with a reason
(docs/ARCHITECTURE.md lists them).
"""
import os
import re
import sys

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(unsafe\s+)?(extern\s+\"C\"\s+)?fn\s+(\w+)")


def code_only(line, state):
    """The line without string/char literal contents and comments; state
    carries an open block comment or string across lines."""
    out, i = [], 0
    while i < len(line):
        c = line[i]
        if state["block"]:
            if line.startswith("*/", i):
                state["block"] = False
                i += 2
            else:
                i += 1
            continue
        if state["str"]:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                state["str"] = False
            i += 1
            continue
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"] = True
            i += 2
            continue
        if c == '"':
            state["str"] = True
            i += 1
            continue
        m = re.match(r"'(\\.|[^\\'])'", line[i:])
        if m:
            i += len(m.group(0))
            continue
        out.append(c)
        i += 1
    return "".join(out)


def scan(path, limit):
    lines = open(path, encoding="utf-8").read().split("\n")
    for n, l in enumerate(lines):
        if re.match(r"^#\[cfg\(test\)\]", l) and n + 1 < len(lines) and re.match(r"^\s*(pub\s+)?mod\s", lines[n + 1]):
            lines = lines[:n]
            break
    found = []
    state = {"block": False, "str": False}
    stack = []  # (name, start line, depth at open)
    depth = 0
    pending = None
    for n, raw in enumerate(lines):
        m = FN.match(raw)
        if m and not state["block"] and not state["str"]:
            allow = "fnlen: allow" in raw or (n > 0 and "fnlen: allow" in lines[n - 1])
            pending = (m.group(6), n, allow)
        code = code_only(raw, state)
        for c in code:
            if c == "{":
                if pending:
                    stack.append((pending[0], pending[1], depth, pending[2]))
                    pending = None
                depth += 1
            elif c == "}":
                depth -= 1
                if stack and stack[-1][2] == depth:
                    name, start, _, allow = stack.pop()
                    length = n - start + 1
                    if length > limit:
                        found.append((length, name, start + 1, allow))
            elif c == ";" and pending and depth >= 0:
                pending = None  # a declaration without a body
    return found


def main():
    args = sys.argv[1:]
    limit = 100
    if args[:1] == ["--max"]:
        limit = int(args[1])
        args = args[2:]
    bad = 0
    for d in args:
        for dirpath, dirs, files in os.walk(d):
            dirs[:] = sorted(x for x in dirs if x not in ("tests", "target"))
            for f in sorted(files):
                if not f.endswith(".rs") or f == "tests.rs" or f.endswith("_tests.rs"):
                    continue
                p = os.path.join(dirpath, f)
                for length, name, line, allow in scan(p, limit):
                    tag = " (allowed)" if allow else ""
                    print(f"{p}:{line}: fn {name} is {length} lines{tag}")
                    bad += 0 if allow else 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
