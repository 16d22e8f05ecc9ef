#!/usr/bin/env bash
# TimescaleDB's first start (docker-entrypoint-initdb.d): the read-only role that the
# provisioned PostgreSQL data source logs in with (user `grafana` in
# deploy/grafana/provisioning/datasources). The schema does not exist yet (the migrator creates
# it later, as POSTGRES_USER), so the grants are that user's default privileges. The Regulator
# dashboard's queries name the tables unqualified: the role's search_path is the storage schema
# (`nev`, storage.schema's default, which compose keeps), or every panel fails.
# tests/integration/test_deploy_grafana_role.py runs it against a real PostgreSQL.
set -euo pipefail
role="${GRAFANA_DB_USER:-grafana}"
password="$(cat "${GRAFANA_DB_PASSWORD_FILE:-/run/secrets/grafana-db-password}")"
psql -v ON_ERROR_STOP=1 -v role="$role" -v pw="$password" \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'pw';
ALTER ROLE :"role" SET default_transaction_read_only = on;
ALTER ROLE :"role" SET search_path = nev;
ALTER DEFAULT PRIVILEGES GRANT USAGE ON SCHEMAS TO :"role";
ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO :"role";
SQL
