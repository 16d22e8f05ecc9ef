#!/usr/bin/env bash
# TimescaleDB's first start (docker-entrypoint-initdb.d): the read-only role `grafana` that the
# provisioned PostgreSQL data source logs in with. The schema does not exist yet (the migrator
# creates it later, as POSTGRES_USER), so the grants are default privileges of that user.
set -euo pipefail
password="$(cat /run/secrets/grafana-db-password)"
psql -v ON_ERROR_STOP=1 -v pw="$password" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE grafana LOGIN PASSWORD :'pw';
ALTER ROLE grafana SET default_transaction_read_only = on;
ALTER DEFAULT PRIVILEGES GRANT USAGE ON SCHEMAS TO grafana;
ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO grafana;
SQL
