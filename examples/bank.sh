#!/usr/bin/env bash
# A round trip through the example bank, against a host started with `make run`.
# Shows a command's position flowing into a query as a consistency token.
set -euo pipefail
URL=${TESSERA_URL:-http://127.0.0.1:8080}
ID=${1:-acct-$RANDOM}

post() {
  curl -sS -X POST "$URL/commands/$1" -H 'content-type: application/json' -d "$2"
}

echo "# open $ID"
post open-account "{\"aggregate_id\": \"$ID\", \"payload\": {\"owner\": \"Ada\"}}"; echo
echo "# deposit 100 (idempotent: sending it twice appends once)"
key=$(cat /proc/sys/kernel/random/uuid)
for _ in 1 2; do
  response=$(curl -sS -X POST "$URL/commands/deposit" -H 'content-type: application/json' \
    -H "Idempotency-Key: $key" -d "{\"aggregate_id\": \"$ID\", \"payload\": {\"amount\": 100}}")
  echo "$response"
done
position=$(echo "$response" | sed -E 's/.*"position":([0-9]+).*/\1/')

echo "# withdraw too much: a business rejection (422)"
post withdraw "{\"aggregate_id\": \"$ID\", \"payload\": {\"amount\": 1000}}"; echo

echo "# read your write: wait until the read models reached position $position"
curl -sS -i "$URL/queries/account?id=$ID" -H "Tessera-Min-Position: $position" \
  | grep -iE '^(HTTP|tessera-)|^\{'

echo "# all accounts, largest balance first, paged"
curl -sS "$URL/queries/accounts?limit=5"; echo
echo "# totals (an async projection: ask for freshness if you need it)"
curl -sS "$URL/queries/totals" -H "Tessera-Min-Position: $position"; echo
echo "# projections and their lag"
curl -sS "$URL/projections"; echo
