#!/usr/bin/env python3
"""Checks the extension's layering: lists the `crate::` edges between its modules (src/*.rs),
fails on an import cycle, and fails when a module calls into a higher layer than its own
(docs/architecture.md draws them).

Run by command 2 (scripts/test.sh). `python3 scripts/layers.py --edges` prints the edges."""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
# Not modules of the layering: the crate root and the in-backend tests.
SKIP = {"lib", "tests"}

# Each module's layer; a module may call its own layer and the ones below.
LAYERS = {
    # L0: errors, settings, argument checks, SPI helpers, jsonb, arrays, access, user functions, cache
    "error": 0, "gucs": 0, "args": 0, "plans": 0, "jsonb": 0, "arrays": 0, "access": 0, "userfn": 0,
    "cache": 0, "metrics": 0, "wakeup": 0, "model": 0, "shards": 0,
    # L1: the schema store; the embedders (profiles)
    "store": 1, "embedders": 1,
    # L2: governance checks, migration, snapshots, fragments, vectors
    "governance": 2, "migration": 2, "snapshots": 2, "fragments": 2, "vectors": 2,
    "projections": 2, "freshness": 2,
    # L3: the registry write pipeline, ingestion
    "registry": 3, "ingest": 3,
    # L4: impact, re-embedding, proposals, maintenance, the worker
    "impact": 4, "reembed": 4, "proposals": 4, "review": 4, "maintenance": 4, "worker": 4,
    "extraction": 4, "interop": 4, "generations": 4,
}


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
    unplaced = sorted(m for m in graph if m not in LAYERS)
    if unplaced:
        print(f"modules without a layer in scripts/layers.py: {unplaced}", file=sys.stderr)
        return 1
    upward = [
        f"{m} (L{LAYERS[m]}) -> {n} (L{LAYERS[n]})"
        for m in sorted(graph)
        for n in sorted(graph[m])
        if LAYERS[n] > LAYERS[m]
    ]
    if upward:
        print("calls into a higher layer: " + "; ".join(upward), file=sys.stderr)
        return 1
    print(f"{len(graph)} src/ modules in 5 layers, no call upward, no import cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
