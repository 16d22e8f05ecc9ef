-- 0004_recompress (plain PostgreSQL): nothing - plain PostgreSQL compresses nothing, so there
-- is nothing to recompress (0004_recompress.timescale.sql). A version needs both flavours; a
-- statement is needed to run at all.
SELECT 1;
