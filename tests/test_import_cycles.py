"""No import cycles anywhere in the package, deferred imports (inside functions) included.

The import-linter `layers` contract keeps the layers pointing down, but it does not see a cycle
between two modules of one layer, nor one hidden behind an import placed inside a function:
grimp's graph holds every import statement, so a cycle is an import a -> b where b reaches a."""

from __future__ import annotations

import grimp


def test_no_module_reaches_back_to_a_module_that_imports_it():
    graph = grimp.build_graph("pipe_rules", cache_dir=None)
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycles.append(f"{importer} -> {' -> '.join(back)}")
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)
