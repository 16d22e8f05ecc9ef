-- 0075_account_scopes_check: 0070's CHECKs let an empty or NULL element through: array_to_string
-- drops NULLs and turns {""} into '' and {LFV,""} into 'LFV,', which its pattern accepted. An
-- empty prefix is spliced into LIKE '' || '%' and matches every VIN: a scope written by hand
-- (roles grant never writes one) would show an OEM login the whole fleet. Now every element is
-- a whole prefix or operator id, as docs/security.md says. A table holding such a row makes
-- this migration fail, naming the constraint: fix the row (roles grant) and migrate again.
ALTER TABLE account_scopes DROP CONSTRAINT IF EXISTS account_scopes_vin_prefixes;
ALTER TABLE account_scopes ADD CONSTRAINT account_scopes_vin_prefixes CHECK (
    array_position(vin_prefixes, NULL) IS NULL
    AND '' <> ALL (vin_prefixes)
    AND array_to_string(vin_prefixes, ',') ~ '^([A-HJ-NPR-Z0-9]{1,17}(,[A-HJ-NPR-Z0-9]{1,17})*)?$'
);
ALTER TABLE account_scopes DROP CONSTRAINT IF EXISTS account_scopes_operator_ids;
ALTER TABLE account_scopes ADD CONSTRAINT account_scopes_operator_ids CHECK (
    array_position(operator_ids, NULL) IS NULL
    AND '' <> ALL (operator_ids)
    AND array_to_string(operator_ids, ',') ~ '^([A-Z0-9]{9}(,[A-Z0-9]{9})*)?$'
);
