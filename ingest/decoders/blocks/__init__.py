"""One module per information type of the real-time / reissue data unit (0x02 / 0x03).

Each module holds the record, the precompiled layout(s) with the spec table in its docstring,
and one ``BlockCodec`` per edition; ``ingest.decoders.registry`` maps (edition, type) to them.

The modules look alike on purpose: each is a declarative field table (``Field``/``Layout``) in
the order of its table of the standard, so that it can be read against the standard line by
line. ``duplicates`` reports these as same-shape pairs; what repeats is the table form, not
logic (that lives once, in ``ingest.decoders.codec`` and ``fields``).
"""
