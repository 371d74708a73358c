#!/bin/bash
# A/B of two `azora serve` builds under the same bench binary: runs
# `azora-bench transfers` against each build in turn (A B A B), each on a
# fresh PostgreSQL database, and prints each run's figures.
#
#   bench/ab.sh <azora binary A> <azora binary B> [extra azora-bench transfers options]
#
# Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust) and a release
# build of azora-bench (cargo build --release -p azora-bench).
set -euo pipefail
a=$1 b=$2; shift 2
bench=${BENCH:-target/release/azora-bench}
for bin in "$a" "$b" "$a" "$b"; do
  db=azora_ab_$$
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  url=postgres://postgres@127.0.0.1:5432/$db
  "$bin" migrate --database-url "$url" up >/dev/null
  key=$("$bin" keys create --bootstrap-admin --database-url "$url" 2>/dev/null | tail -1)
  AZORA_RATE_LIMIT= "$bin" serve --listen-addr 127.0.0.1:50072 --database-url "$url" \
    --health-interval-ms 3600000 >/dev/null 2>&1 &
  pid=$!
  sleep 3
  echo "== $bin"
  "$bench" transfers --clients 32 --duration 10s --rounds 2 --wallets 1000 "$@" \
    --server-addr 127.0.0.1:50072 --admin-key "$key" --database-url "$url" --server-pid $pid 2>&1 \
    | grep -vE '^(round|done|setting up|loading)'
  kill $pid
  wait $pid 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db"
done
