"""One module per information type of the real-time / reissue data unit (0x02 / 0x03).

Each module holds the record, the precompiled layout(s) with the spec table in its docstring,
and one ``BlockCodec`` per edition; ``ingest.decoders.registry`` maps (edition, type) to them.
"""
