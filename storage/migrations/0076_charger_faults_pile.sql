-- 0076_charger_faults_pile: a pile's faults are keyed by the pile. 0006 keyed charger_faults by
-- (operator_id, connector_id, ts, source) with connector_id '' for a fault of the pile, so the
-- pile faults of two piles of one operator in the same second had one key: the second pile's
-- was skipped as a duplicate. The pile is the frame's charger code (charger_id), so it joins
-- the key, after ts (the leading columns stay the connector's, as the faults query reads them).
-- charger_id is NOT NULL from now on: '' where a report names no pile (a T/CEC push has no
-- charger code; pushes carry no faults today). Rows of the binary profile always have one.
--
-- The same on both flavours. On TimescaleDB the key change reaches compressed chunks too
-- (tests/integration/test_storage_timescale.py applies it over one); the compression order
-- gains charger_id in 0076_charger_faults_pile.timescale.sql.

UPDATE charger_faults SET charger_id = '' WHERE charger_id IS NULL;
ALTER TABLE charger_faults ALTER COLUMN charger_id SET DEFAULT '';
ALTER TABLE charger_faults ALTER COLUMN charger_id SET NOT NULL;
ALTER TABLE charger_faults DROP CONSTRAINT charger_faults_pkey;
ALTER TABLE charger_faults ADD PRIMARY KEY (operator_id, connector_id, ts, charger_id, source);
