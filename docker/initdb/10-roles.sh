#!/bin/sh
# Run once by the postgis image on an empty data directory, as its superuser (POSTGRES_USER).
# The product's roles, as in the managed cluster (tongguan/services.py): none is a superuser or
# has BYPASSRLS. The owner runs the migrations; the app serves the web and API and switches to
# tongguan_scoped per request; the workers run ingest, detect and notify.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v owner_pw="$TONGGUAN_OWNER_PASSWORD" -v app_pw="$TONGGUAN_APP_PASSWORD" \
     -v worker_pw="$TONGGUAN_WORKER_PASSWORD" <<'SQL'
CREATE ROLE tongguan_owner LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE CREATEDB PASSWORD :'owner_pw';
CREATE ROLE tongguan_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOINHERIT PASSWORD :'app_pw';
CREATE ROLE tongguan_worker LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE PASSWORD :'worker_pw';
CREATE ROLE tongguan_scoped NOLOGIN NOSUPERUSER NOBYPASSRLS;
GRANT tongguan_scoped TO tongguan_owner, tongguan_app;
ALTER DATABASE :"DBNAME" OWNER TO tongguan_owner;
CREATE EXTENSION IF NOT EXISTS postgis;
SQL
