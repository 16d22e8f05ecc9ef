"""Developer tools, not shipped in the wheel: the local dev stack, the demo, the load generator
and the simulators (``devtools.sim``) that tests, benchmarks, the demo and the load generator
share. They may import anything of the service; nothing of the service imports them (the
``nev-ingest`` commands they add are found by name when this package is installed).
"""
