#!/bin/sh
# Runs once, when the official image initialises an empty data directory
# (/docker-entrypoint-initdb.d). The server is restarted afterwards, so
# archive_mode takes effect.
set -eu

cat >> "$PGDATA/postgresql.conf" <<'CONF'

# --- walship (docker/initdb/10-walship.sh) ---
archive_mode = on
archive_command = 'walship push %p'
# A segment switch at least every minute bounds the data not yet in a
# finished segment; the archival lag alert covers the rest of the RPO.
archive_timeout = 60
restore_command = 'walship fetch %f %p'
CONF

# A login for the metrics reporter: pg_monitor may read pg_stat_archiver,
# the WAL position and pg_ls_archive_statusdir(), nothing else.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
CREATE ROLE walship_monitor LOGIN IN ROLE pg_monitor;
SQL
