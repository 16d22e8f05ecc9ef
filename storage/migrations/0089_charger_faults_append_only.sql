-- 0089_charger_faults_append_only: an UPDATE of charger_faults may only append fault codes.
--
-- The conflict path of charger_faults is an upsert (storage/tables.py _FAULT_MERGE: a later
-- report's codes are appended to the stored row of its second), so the writer role holds
-- UPDATE on the table: of fault_codes on plain PostgreSQL, of every column on TimescaleDB
-- (a column grant cannot be passed on to the compressed table). That let a writer login
-- erase or rewrite stored fault history (SET fault_codes = '{}', or move a row to another
-- second, pile or operator), where before it could only add rows. This trigger, owned by the
-- owner role like every object here (the writer cannot drop or disable it), refuses with
-- SQLSTATE 42501 any update that changes a column other than fault_codes or does not keep
-- the stored codes as the new array's prefix: the merge still works, blanking or moving a row
-- does not. On TimescaleDB it reaches every chunk, compressed ones too (their rows are
-- decompressed into the chunk, where the trigger fires); the internal compressed tables
-- themselves have no trigger, so the writer holds no UPDATE there (storage/roles_compressed.py).
-- A later migration that must rewrite rows drops the trigger and creates it again, as below,
-- in its one transaction (DROP TRIGGER ... ; UPDATE ... ; CREATE TRIGGER ...): ALTER TABLE
-- ... DISABLE TRIGGER is refused on TimescaleDB (a hypertable with columnstore enabled,
-- FeatureNotSupportedError). The same on both flavours.

CREATE OR REPLACE FUNCTION charger_faults_append_only() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- every column but fault_codes as it was (jsonb of the row: columns added later too)
    IF to_jsonb(NEW) - 'fault_codes' IS DISTINCT FROM to_jsonb(OLD) - 'fault_codes'
       -- the stored codes, in their places, begin the new array (a slice is numbered from 1:
       -- the lower bound is compared apart, or '[0:1]={5,9}' would pass over '{9}')
       OR (cardinality(OLD.fault_codes) > 0 AND (
           array_lower(NEW.fault_codes, 1) IS DISTINCT FROM array_lower(OLD.fault_codes, 1)
           OR NEW.fault_codes[array_lower(OLD.fault_codes, 1):array_upper(OLD.fault_codes, 1)]
              IS DISTINCT FROM OLD.fault_codes))
    THEN
        RAISE EXCEPTION 'charger_faults rows may only gain fault codes, not lose, reorder or move them'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'stored fault history is append-only (migration 0089)';
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS charger_faults_append_only ON charger_faults;
CREATE TRIGGER charger_faults_append_only
    BEFORE UPDATE ON charger_faults
    FOR EACH ROW EXECUTE FUNCTION charger_faults_append_only();
