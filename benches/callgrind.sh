#!/usr/bin/env bash
# Instructions per call on the client side, the factory against the plain SDK client a user
# would otherwise build (see examples/profile_overhead.rs), under callgrind.
#
# The local server runs in another process (the `bedrock-pool-local` binary), so its
# instructions are not counted. Each side runs twice, with SHORT and LONG calls after the same
# setup; (LONG - SHORT) / (LONG - SHORT calls) is the instructions of one call, setup subtracted.
#
# Run: bash benches/callgrind.sh [h2|h1|both] (needs valgrind; about 10 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
protocols=${1:-both}
[ "$protocols" = both ] && protocols="h2 h1"
SHORT=${SHORT:-100}
LONG=${LONG:-600}
CONCURRENCY=${CONCURRENCY:-50}
# "unary" too: the factory with unary_over_stream(false), the same operation as the plain client.
SIDES=${SIDES:-plain factory}
cargo build -q --release --example profile_overhead -p bedrock-pool
cargo build -q --release -p bedrock-pool-local
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(( 20000 + RANDOM % 20000 ))
instructions() { # side calls protocol -> Ir of the whole run
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
        target/release/examples/profile_overhead "$1" "$2" "$CONCURRENCY" "$3" >/dev/null 2>"$work/vg.err"
    awk '/^summary:/ {print $2}' "$work/cg.out"
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
        short=$(instructions "$side" "$SHORT" "$protocol")
        long=$(instructions "$side" "$LONG" "$protocol")
        per_call[$side]=$(( (long - short) / (LONG - SHORT) ))
        echo "$protocol $side: $short Ir for $SHORT calls, $long Ir for $LONG calls: ${per_call[$side]} Ir per call"
    done
    for side in $SIDES; do
        [ "$side" = plain ] && continue
        awk -v f="${per_call[$side]}" -v p="${per_call[plain]}" -v proto="$protocol" -v side="$side" \
            'BEGIN { printf "%s: %s / plain SDK client, instructions per call: %.3f (%+.1f%%)\n", proto, side, f / p, 100 * (f / p - 1) }'
    done
    kill "$server"
    wait "$server" 2>/dev/null || true
done
