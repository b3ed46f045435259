#!/bin/sh
# Makes the cluster on first start — role $POSTGRES_USER (kiln) with password $POSTGRES_PASSWORD
# (required), owning database $POSTGRES_DB (kiln), reachable from the compose network with that
# password (scram-sha-256) — then runs the server in the foreground, so `docker stop` stops it
# cleanly.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
user="${POSTGRES_USER:-kiln}"
db="${POSTGRES_DB:-kiln}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth=scram-sha-256 --encoding=UTF8 >/dev/null
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  postgres -D "$PGDATA" -c listen_addresses= -k /tmp &
  pid=$!
  until pg_isready -h /tmp -q; do sleep 0.2; done
  PGPASSWORD="$POSTGRES_PASSWORD" psql -h /tmp -U "$user" -d postgres -q -c "CREATE DATABASE \"$db\" OWNER \"$user\""
  kill "$pid"
  wait "$pid" || true
fi
exec postgres -D "$PGDATA" -k /tmp
