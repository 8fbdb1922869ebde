"""The use cases: one module per story (isolate, release, follow up), each read top to bottom over
the ports, each returning an immutable ``Reply`` that ``respond`` carries out."""
