#!/usr/bin/env bash
# A local PostgreSQL for the tests (`make postgres`): installs the server when missing
# (Debian's `postgresql` package), makes a cluster in target/postgres (trust
# authentication, listening on 127.0.0.1:$PORT and a socket in target/postgres/run),
# starts it unless it runs already, and prints its URL last. The tests read that URL
# from TESSERA_TEST_POSTGRES, whose default is the same URL.
#
# PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres`
# user (the package creates it; made here if missing) and every server command runs as
# that user through runuser.
set -euo pipefail
cd "$(dirname "$0")/../.."

PORT="${TESSERA_POSTGRES_PORT:-55432}"
ROOT="$PWD/target/postgres"
DATA="$ROOT/data"
RUN="$ROOT/run"
URL="postgres://tessera@127.0.0.1:$PORT/postgres"

# The server's programs: on PATH, else in Debian's versioned folder.
find_bin() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return
    fi
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return
        fi
    done
}

BIN="$(find_bin)"
if [ -z "$BIN" ]; then
    echo "PostgreSQL is not installed; installing Debian's postgresql package" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
    BIN="$(find_bin)"
    [ -n "$BIN" ] || { echo "initdb not found after installing postgresql" >&2; exit 1; }
fi

# Whom the server runs as: the current user, or `postgres` when that is root.
if [ "$(id -u)" -eq 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
    as_server() { runuser -u postgres -- "$@"; }
    # The server's user must reach the cluster through the worktree's folders.
    dir="$ROOT"
    while [ "$dir" != "/" ]; do
        dir="$(dirname "$dir")"
        [ -d "$dir" ] && chmod o+x "$dir" 2>/dev/null || true
    done
else
    as_server() { "$@"; }
fi

mkdir -p "$ROOT"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$ROOT"; fi
if [ ! -f "$DATA/PG_VERSION" ]; then
    as_server "$BIN/initdb" --pgdata "$DATA" --username tessera --auth trust \
        --encoding UTF8 --no-locale >"$ROOT/initdb.log" 2>&1 \
        || { cat "$ROOT/initdb.log" >&2; exit 1; }
fi
as_server mkdir -p "$RUN"

if ! as_server "$BIN/pg_ctl" status --pgdata "$DATA" >/dev/null 2>&1; then
    # fsync stays on: the tests check acknowledged commits across SIGKILLs of hosts,
    # not of the database, but a cluster that lies about durability would hide bugs.
    as_server "$BIN/pg_ctl" start --pgdata "$DATA" --wait --timeout 60 \
        --log "$ROOT/server.log" \
        -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$RUN -c max_connections=400" \
        >/dev/null || { tail -n 40 "$ROOT/server.log" >&2; exit 1; }
fi
echo "$URL"
