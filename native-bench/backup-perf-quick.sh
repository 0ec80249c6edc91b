#!/bin/bash
# A quick, walship-only measurement of `walship backup` and `walship restore`
# (CPU s and peak RSS from /usr/bin/time -v), for before/after comparisons
# of one change; the full bench with pgBackRest side by side is
# `BENCH_BACKUP_ONLY=1 npm run bench`. Run as root from the checkout:
#
#   native-bench/backup-perf-quick.sh setup [SCALE]   # cluster + pgbench -i -s SCALE (default 30)
#   native-bench/backup-perf-quick.sh install         # copy the current dist/ in (after npm run build)
#   native-bench/backup-perf-quick.sh backup TAG      # one timed walship backup --fast
#   native-bench/backup-perf-quick.sh restore TAG     # one timed walship restore -j 2 (latest backup)
#   native-bench/backup-perf-quick.sh stop
#
# Settings as in the bench: file store, LZ4, AES-256-GCM keyfile, default
# part size, -j 2. Results go to $WORK/results.tsv (WORK=/tmp/walship-perf).
# EXTRA_ENV="NAME=value ..." adds to the environment walship runs in.
set -euo pipefail
WORK=${WORK:-/tmp/walship-perf}
PGBIN=/usr/lib/postgresql/15/bin
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SOCK=$WORK/sock
W=${W:-$WORK/walship/bin/walship}
NODE_DIR=$(dirname "$(command -v node)")
ENVV=(env -i PATH="$PGBIN:$NODE_DIR:/usr/local/bin:/usr/bin:/bin" LANG=C.UTF-8 HOME=$WORK
  WALSHIP_STORE=file://$WORK/store WALSHIP_SPOOL_DIR=$WORK/spool WALSHIP_COMPRESSION=lz4
  WALSHIP_ENCRYPTION=keyfile WALSHIP_KEY_FILE=$WORK/keys/walship.key
  PGHOST=$SOCK PGPORT=5433 PGUSER=postgres ${EXTRA_ENV:-})
asPg() { runuser -u postgres -- "${ENVV[@]}" "$@"; }

install() {
  rm -rf "$WORK/walship"
  mkdir -p "$WORK/walship"
  (cd "$ROOT" && node --input-type=module -e "import { installWalship } from './native-bench/lib/tools.mjs'; const r = await installWalship(process.cwd(), '$WORK/walship'); console.log('installed', r.version, r.buildId);")
}

# /usr/bin/time -v over the call: user+sys of it and every child it waited
# for, and the largest resident set of any one of them.
timed() {
  local op=$1 tag=$2; shift 2
  local out=$WORK/runs/$op-$tag-$(date +%s).time
  mkdir -p "$WORK/runs"
  /usr/bin/time -v -o "$out" "$@" > "$out.log" 2>&1 || { echo "FAILED, see $out.log"; tail -20 "$out.log"; exit 1; }
  local user sys wall rss db
  user=$(awk -F': ' '/User time/ {print $2}' "$out")
  sys=$(awk -F': ' '/System time/ {print $2}' "$out")
  wall=$(awk -F': ' '/Elapsed \(wall/ {print $2}' "$out")
  rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$out")
  db=$(cat "$WORK/dbbytes")
  awk -v op="$op" -v tag="$tag" -v u="$user" -v s="$sys" -v w="$wall" -v r="$rss" -v db="$db" 'BEGIN {
    printf "%s\t%s\tcpu_s=%.2f\tcpu_s_per_gb=%.2f\twall=%s\tpeak_rss_mb=%.0f\n", op, tag, u + s, (u + s) / (db / 1e9), w, r / 1024 }' | tee -a "$WORK/results.tsv"
}

case ${1:-} in
  setup)
    scale=${2:-30}
    rm -rf "$WORK"; mkdir -p "$WORK"/{sock,store,spool,keys}
    install
    chown -R postgres: "$WORK"
    asPg "$W" key create --file "$WORK/keys/walship.key" >/dev/null
    asPg "$PGBIN/initdb" -D "$WORK/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
    (cd "$WORK/data" && asPg "$W" init -D "$WORK/data")
    cat >> "$WORK/data/postgresql.auto.conf" <<EOF
port = 5433
unix_socket_directories = '$SOCK'
listen_addresses = ''
archive_mode = on
archive_command = '$W push %p'
EOF
    asPg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w start >/dev/null
    asPg "$PGBIN/pgbench" -i -q -s "$scale" postgres
    asPg "$PGBIN/psql" -X -qAt -c CHECKPOINT -c 'SELECT pg_switch_wal()' postgres >/dev/null
    asPg "$PGBIN/psql" -X -qAt -c 'SELECT sum(pg_database_size(oid)) FROM pg_database' postgres > "$WORK/dbbytes"
    echo "database $(cat "$WORK/dbbytes") bytes"
    ;;
  install) install ;;
  backup) timed backup "${2:?tag}" runuser -u postgres -- "${ENVV[@]}" "$W" backup --fast --part-size "${PART_SIZE:-1GiB}" ;;
  restore)
    rm -rf "$WORK/restored"
    timed restore "${2:?tag}" runuser -u postgres -- "${ENVV[@]}" "$W" restore --pgdata "$WORK/restored" -j 2
    rm -rf "$WORK/restored"
    ;;
  stop) asPg "$PGBIN/pg_ctl" -D "$WORK/data" -m fast -w stop ;;
  *) sed -n 2,15p "$0"; exit 2 ;;
esac
