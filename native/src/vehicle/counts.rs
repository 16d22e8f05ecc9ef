//! A walk that stopped early because a motor / pack count was too large: port of
//! `ingest/decoders/counts.py` `find_miscount` (owner: n1-v2016).
