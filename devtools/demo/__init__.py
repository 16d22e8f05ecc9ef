"""``nev-ingest demo``: the whole system on this machine, in one command (see ``cli``)."""
