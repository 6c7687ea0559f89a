#!/usr/bin/env python3
"""Lists the `crate::` edges between the extension's modules (src/*.rs) and fails on a cycle.

Run by command 2 (scripts/test.sh). `python3 scripts/layers.py --edges` prints the edges."""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
# Not modules of the layering: the crate root and the in-backend tests.
SKIP = {"lib", "tests"}


def edges():
    modules = {p.stem for p in SRC.glob("*.rs")} - SKIP
    out = {m: set() for m in modules}
    for m in modules:
        text = (SRC / f"{m}.rs").read_text()
        # `crate::x`, and the names inside `use crate::{x, y::z}`.
        names = set(re.findall(r"crate::([a-z_]+)", text))
        for group in re.findall(r"crate::\{([^}]*)\}", text):
            names |= {n.strip().split("::")[0] for n in group.split(",")}
        out[m] = {n for n in names if n in modules and n != m}
    return out


def find_cycle(graph):
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path + [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [node])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                start = found.index(found[-1])
                return found[start:]
    return None


def main():
    graph = edges()
    if "--edges" in sys.argv:
        for m in sorted(graph):
            print(f"{m} -> {' '.join(sorted(graph[m]))}")
    cycle = find_cycle(graph)
    if cycle:
        print("import cycle among src/ modules: " + " -> ".join(cycle), file=sys.stderr)
        return 1
    print(f"no import cycle among {len(graph)} src/ modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
