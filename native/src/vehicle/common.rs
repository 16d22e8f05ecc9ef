//! The alarm block and the pack join, shared by both editions: port of the
//! `fast_common.parse_alarm` / `join_packs` (owner: n1-v2016).
