#!/usr/bin/env bash
# Runs the SDK checks (boto3_check.py, then js_check/check.mjs) against a local server that it
# starts, and stops that server whatever happens. CI runs it (.ci/run); a developer can too.
#
#   local/scripts/run_checks.sh [path to the bedrock-pool-local binary]
#
# The binary is the argument, else $BEDROCK_POOL_LOCAL, else the dev-profile build
# (target/debug/bedrock-pool-local; `cargo build -p bedrock-pool-local` makes it). Needs python3
# (with venv), node and npm, and the package registries: boto3 goes into a fresh virtualenv in
# a temporary directory (never system-wide), the JavaScript SDK into js_check/node_modules by
# `npm ci` from the committed package-lock.json. Any failed check fails the script.
set -euo pipefail
started=$SECONDS
scripts="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$scripts/../.." && pwd)"
bin="${1:-${BEDROCK_POOL_LOCAL:-${CARGO_TARGET_DIR:-$root/target}/debug/bedrock-pool-local}}"
# The oldest boto3 with every operation boto3_check.py calls (invoke_guardrail_checks is the
# newest of them).
boto3_requirement="boto3>=1.43.30"
if [ ! -x "$bin" ]; then
    echo "run_checks: no server binary at $bin (cargo build -p bedrock-pool-local)" >&2
    exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/bedrock-pool-checks.XXXXXX")"
server=""
cleanup() {
    local status=$?
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -s "$work/server.log" ]; then
        echo "run_checks: failed ($status); the server's output:" >&2
        cat "$work/server.log" >&2
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
# A signal ends the script through the EXIT trap, so the server never outlives it.
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# The clients first (the registries are the slow, flaky part), then the server.
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "$boto3_requirement"
"$work/venv/bin/python" -c 'import boto3; print("boto3", boto3.__version__)'
(cd "$scripts/js_check" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
echo "node $(node --version), $(cd "$scripts/js_check" && node -p \
    'require("@aws-sdk/client-bedrock-runtime/package.json").version') of the JavaScript SDK"

# Free loopback ports (the server picks them when no --port is given) and a CA file of our own.
"$bin" --ca-file "$work/ca.pem" >"$work/server.log" 2>&1 &
server=$!
# It prints its endpoints, then "Serving" once it listens.
for _ in $(seq 300); do
    grep -q '^Serving' "$work/server.log" && break
    if ! kill -0 "$server" 2>/dev/null; then
        echo "run_checks: the server exited before it was ready" >&2
        exit 1
    fi
    sleep 0.1
done
if ! grep -q '^Serving' "$work/server.log"; then
    echo "run_checks: the server was not ready after 30 s" >&2
    exit 1
fi
bedrock_url="$(sed -n 's/^Bedrock Runtime: *//p' "$work/server.log")"
sts_url="$(sed -n 's/^STS: *//p' "$work/server.log")"
echo "server: $bedrock_url (STS $sts_url)"

"$work/venv/bin/python" "$scripts/boto3_check.py" "$bedrock_url" "$sts_url" "$work/ca.pem"
(cd "$scripts/js_check" && node check.mjs "$bedrock_url" "$sts_url" "$work/ca.pem")
echo "run_checks: boto3 and JavaScript SDK checks passed in $((SECONDS - started)) s"
