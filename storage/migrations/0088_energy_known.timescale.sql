-- 0088_energy_known (TimescaleDB): nothing yet. The continuous aggregates vehicle_stats_1m/_1h
-- still compute energy as 0003 did (a frame with an unknown current counts as 0 kW): a
-- continuous aggregate's query cannot be altered, and dropping vehicle_stats_1h to recreate it
-- would lose the hours whose raw rows retention already dropped. The plan for a later version
-- (new aggregates beside the old ones behind a view that cuts over at a recorded time) is in
-- docs/operations.md ("Upgrading to 0088"). A version needs both flavours; a statement is
-- needed to run.
SELECT 1;
