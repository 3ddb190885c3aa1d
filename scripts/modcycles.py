#!/usr/bin/env python3
"""Find import circles between the modules of one crate.

usage: scripts/modcycles.py CRATE_SRC_DIR [...]   (e.g. dom0/src vm-agent/src)

Each file is a module (src/a/b.rs and src/a/b/mod.rs are `a::b`). A module
depends on another when it names it through `crate::`, `super::` or `self::`
paths (in `use` or inline), resolved to the deepest module that exists. A
module naming one of its own ancestors (a child using its parent's items) is
not counted; everything else is. Test code (`#[cfg(test)]` modules at the end
of a file, files called tests.rs or under a tests/ directory) is skipped.
Prints each circle (a strongly connected group of two or more modules) and
exits 1 if there is one.
"""
import os
import re
import sys

PATH = re.compile(r"\b(crate|super|self)((?:::\w+)+|::\{)")
USE_BLOCK = re.compile(r"\buse\s+(crate|super|self)::\{([^;]*)\};", re.S)


def modules(src):
    mods = {}
    for dirpath, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d != "tests"]
        for f in files:
            if not f.endswith(".rs") or f == "tests.rs":
                continue
            p = os.path.join(dirpath, f)
            rel = os.path.relpath(p, src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            if rel and rel[0] == "bin":
                continue
            mods[tuple(rel)] = p
    return mods


def strip_tests(text):
    m = re.search(r"^#\[cfg\(test\)\]\s*\n\s*(pub\s+)?mod\s+\w+\s*\{", text, re.M)
    text = text[: m.start()] if m else text
    text = re.sub(r"//[^\n]*", "", text)
    return text


def resolve(mod, kw, parts, known):
    if kw == "crate":
        base = []
    elif kw == "self":
        base = list(mod)
    else:
        base = list(mod[:-1])
        while parts and parts[0] == "super":
            base = base[:-1]
            parts = parts[1:]
    full = base + parts
    for n in range(len(full), -1, -1):
        if tuple(full[:n]) in known:
            return tuple(full[:n])
    return ()


def edges(mods):
    g = {m: set() for m in mods}
    for m, p in mods.items():
        text = strip_tests(open(p, encoding="utf-8").read())
        refs = []
        for kw, tail in PATH.findall(text):
            refs.append((kw, [x for x in tail.split("::") if x and x != "{"]))
        for kw, inner in USE_BLOCK.findall(text):
            for item in re.split(r",(?![^{]*\})", inner):
                item = re.sub(r"\{.*", "", item.strip())
                parts = [x for x in item.split("::") if x and x != "self"]
                if parts:
                    refs.append((kw, parts))
        for kw, parts in refs:
            t = resolve(m, kw, parts, mods)
            if t != m and t[: len(t)] != m[: len(t)]:
                g[m].add(t)
    return g


def sccs(g):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def main():
    bad = 0
    for src in sys.argv[1:]:
        mods = modules(src)
        g = edges(mods)
        for comp in sccs(g):
            bad += 1
            names = sorted("::".join(c) or "crate" for c in comp)
            print(f"{src}: import circle: {' <-> '.join(names)}")
            inside = set(comp)
            for c in sorted(comp):
                for t in sorted(g[c] & inside):
                    print(f"    {'::'.join(c) or 'crate'} -> {'::'.join(t) or 'crate'}")
    if not bad:
        print(f"no import circles in {' '.join(sys.argv[1:])}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
