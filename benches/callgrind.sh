#!/usr/bin/env bash
# Instructions per call on the client side, the factory against the plain SDK client a user
# would otherwise build (see examples/profile_overhead.rs), under callgrind.
#
# The local server runs in another process (the `bedrock-pool-local` binary), so its
# instructions are not counted. Each side runs twice, with SHORT and LONG calls after the same
# setup; (LONG - SHORT) / (LONG - SHORT calls) is the instructions of one call, setup subtracted.
# TLS handshakes are left out of each run's count (the inclusive cost of tokio-rustls's connect
# future, from callgrind_annotate): the SDK's default client opens a varying number of extra
# HTTP/1.1 connections at c=50 (about 1 to 2.5 MB of instructions each, more than a call's
# whole cost per extra connection and run), which made its per-call figure noise. The number
# of handshakes of each run is printed beside it.
#
# Run: bash benches/callgrind.sh [h2|h1|both] (needs valgrind; about 15 minutes for both protocols and the four sides).
set -euo pipefail
cd "$(dirname "$0")/.."
protocols=${1:-both}
[ "$protocols" = both ] && protocols="h2 h1"
SHORT=${SHORT:-100}
LONG=${LONG:-600}
CONCURRENCY=${CONCURRENCY:-50}
# plain: the SDK client a user builds; raw: the SDK client on the factory's pool (the pool's own
# cost); unary: the factory with unary_over_stream(false), the same operation as the plain
# client; factory: the factory's defaults (unary calls carried as ConverseStream); stream (not
# in the defaults): the same ConverseStream call as the caller's stream, read ahead by a task,
# collected (`SIDES="factory stream"` gives the read-ahead's cost).
SIDES=${SIDES:-plain raw unary factory}
cargo build -q --release --example profile_overhead -p bedrock-pool
cargo build -q --release -p bedrock-pool-local
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(( 20000 + RANDOM % 20000 ))
instructions() { # side calls protocol -> "Ir handshakes" of the whole run, handshakes left out
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
        target/release/examples/profile_overhead "$1" "$2" "$CONCURRENCY" "$3" >/dev/null 2>"$work/vg.err"
    local total handshake count
    total=$(awk '/^summary:/ {print $2}' "$work/cg.out")
    handshake=$(callgrind_annotate --inclusive=yes --threshold=100 "$work/cg.out" 2>/dev/null |
        awk '/tokio_rustls::client::Connect<IO> as core::future::future::Future>::poll/ {gsub(",", "", $1); print $1; exit}' || true)
    count=$(callgrind_annotate --tree=caller --threshold=100 "$work/cg.out" 2>/dev/null |
        awk '/\*.*curve25519_x25519_alt/ { if (match(prev, /\([0-9,]+x\)/)) { c = substr(prev, RSTART + 1, RLENGTH - 3); gsub(",", "", c); print c }; exit } { prev = $0 }' || true)
    echo "$(( total - ${handshake:-0} )) ${count:-0}"
}
for protocol in $protocols; do
    flag=""
    [ "$protocol" = h1 ] && flag="--h1"
    port=$(( port + 2 ))
    target/release/bedrock-pool-local --port "$port" --ca-file "$work/ca.pem" $flag >"$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do grep -q "^STS" "$work/server.log" && break; sleep 0.1; done
    export PROFILE_BEDROCK_URL="https://127.0.0.1:$port" PROFILE_STS_URL="https://127.0.0.1:$((port + 1))" PROFILE_CA="$work/ca.pem"
    declare -A per_call
    for side in $SIDES; do
        read -r short short_hs < <(instructions "$side" "$SHORT" "$protocol")
        read -r long long_hs < <(instructions "$side" "$LONG" "$protocol")
        per_call[$side]=$(( (long - short) / (LONG - SHORT) ))
        echo "$protocol $side: $short Ir for $SHORT calls ($short_hs handshakes), $long Ir for $LONG calls ($long_hs handshakes), handshakes left out: ${per_call[$side]} Ir per call"
    done
    if [ -n "${per_call[factory]:-}" ] && [ -n "${per_call[stream]:-}" ]; then
        awk -v s="${per_call[stream]}" -v f="${per_call[factory]}" -v proto="$protocol" \
            'BEGIN { printf "%s: stream (read ahead) / factory (carried, read directly), instructions per call: %.3f (%+.1f%%)\n", proto, s / f, 100 * (s / f - 1) }'
    fi
    for side in $SIDES; do
        [ "$side" = plain ] || [ -z "${per_call[plain]:-}" ] && continue
        awk -v f="${per_call[$side]}" -v p="${per_call[plain]}" -v proto="$protocol" -v side="$side" \
            'BEGIN { printf "%s: %s / plain SDK client, instructions per call: %.3f (%+.1f%%)\n", proto, side, f / p, 100 * (f / p - 1) }'
    done
    kill "$server"
    wait "$server" 2>/dev/null || true
done
