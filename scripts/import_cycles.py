"""Print the import cycles among modicseg's modules; exit status 1 when there is one.

Counts every import that import-linter counts (grimp's graph: module-level, function-local and
TYPE_CHECKING imports alike), between modules, the package ``__init__`` modules included (so a
cycle through the top-level package's lazy API counts too).  A cycle is printed as the modules of
one strongly connected component of the import graph.  ``make test`` runs it after
``lint-imports``, whose ``acyclic_siblings`` contract checks the same between sibling packages.

    .venv/bin/python scripts/import_cycles.py [PACKAGE]
"""

from __future__ import annotations

import sys

import grimp


def import_cycles(package: str = "modicseg") -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    graph = grimp.build_graph(package, include_external_packages=False)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = edges[node]
            if i < len(targets):
                work.append((node, i + 1))
                target = targets[i]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return sorted(cycles)


def main(argv: list[str]) -> int:
    package = argv[1] if len(argv) > 1 else "modicseg"
    cycles = import_cycles(package)
    for component in cycles:
        print("cycle: " + " <-> ".join(component))
    print(f"{package}: {len(cycles)} import cycle(s)")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
