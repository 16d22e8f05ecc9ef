-- 0071_stats_refresh_clamp (TimescaleDB): nothing - the continuous aggregates refresh
-- themselves and keep what retention dropped (0071_stats_refresh_clamp.plain.sql is the plain
-- flavour's summary function). A version needs both flavours; a statement is needed to run.
SELECT 1;
