#!/bin/sh
# One PostgreSQL login per component (docker-compose.yml), created once, when the data volume is first
# initialised, by the postgres image's entrypoint (as the superuser, which nothing else uses):
#   special_measures_owner    owns the service's database and runs the migrations (`regime migrate`)
#   special_measures_service  the API and the worker: the rights the migrations grant it (it may read and
#                             append the audit log, never change it; db/migrations/008); not the owner
#   temporal                  the Temporal server's own databases (auto-setup creates them)
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v owner_pw="$SM_OWNER_PASSWORD" -v service_pw="$SM_SERVICE_PASSWORD" -v temporal_pw="$TEMPORAL_DB_PASSWORD" <<'SQL'
CREATE ROLE special_measures_owner LOGIN PASSWORD :'owner_pw' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE special_measures_service LOGIN PASSWORD :'service_pw' NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
CREATE ROLE temporal LOGIN PASSWORD :'temporal_pw' NOSUPERUSER CREATEDB NOCREATEROLE;
ALTER DATABASE special_measures OWNER TO special_measures_owner;
ALTER SCHEMA public OWNER TO special_measures_owner;
REVOKE ALL ON DATABASE special_measures FROM PUBLIC;
GRANT CONNECT ON DATABASE special_measures TO special_measures_owner, special_measures_service;
-- The migrations grant the service its rights; the owner must be able to hand them on (and SET ROLE).
GRANT special_measures_service TO special_measures_owner;
SQL
