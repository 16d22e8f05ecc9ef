"""Data units of the commands other than real-time / reissue data (which ``frame`` walks).

A body decoder is ``decode(buf, off, end) -> (record, new_off, stop_reason)``: ``off`` is the
first byte after the collection time (or the data-unit start for untimed commands), and a
non-``None`` ``stop_reason`` means it had to stop before ``end`` at ``new_off`` (e.g. a
parameter ID whose length the standard does not define); the rest becomes the opaque tail.
"""
