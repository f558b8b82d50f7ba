#!/usr/bin/env bash
# Fuzzes the HTTP API against its own OpenAPI document with schemathesis: starts `spheroseg serve`
# ($SPHEROSEG_BIN) on a free loopback port with a fresh data directory and one worker, segments one
# fixture image so the job routes have a job with a result, and has schemathesis send a bounded
# number of generated requests to every operation. Fails when any answer is a 5xx or does not match
# the document (status code, content type, headers, body schema). Makes or reuses a venv under
# $HOME/.cache. Run by .ci/run.
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
# Generated requests per operation and phase, and the longest each pass may take (a bound only:
# schemathesis's own --max-time would keep fuzzing until it is spent).
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-50}"
MAX_TIME_SECS="${SCHEMATHESIS_MAX_TIME:-600}"
# Fixed, so a CI run is repeatable; set another to explore.
SEED="${SCHEMATHESIS_SEED:-1}"

here="$(cd "$(dirname "$0")" && pwd)"
bin="${SPHEROSEG_BIN:?set SPHEROSEG_BIN to the spheroseg binary}"
[[ -x "$bin" ]] || { echo "SPHEROSEG_BIN=$bin is not an executable" >&2; exit 2; }

venv="$HOME/.cache/spheroseg-venv-schemathesis"
if [[ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != *"$SCHEMATHESIS_VERSION"* ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$venv/bin/schemathesis" --version

work="$(mktemp -d)"
server=""
cleanup() {
  if [[ -n "$server" ]] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "--- server log (last 50 lines)" >&2
  tail -n 50 "$work/server.log" >&2
  echo "$1" >&2
  exit 1
}

# A config file of our own and a clean environment, so no ./spheroseg.toml, token or ML service of
# the caller's changes what is tested. The ML service is configured so that /api/ml, the breaker
# and the health checks have something to show; nothing listens on its port, and no job uses it.
# Port 0: the kernel picks a free port, and the log says which.
cat >"$work/spheroseg.toml" <<'EOF'
[ml]
url = "http://127.0.0.1:9"
EOF
env -i PATH="$PATH" HOME="$HOME" SPHEROSEG_LOG=info \
  "$bin" serve --config "$work/spheroseg.toml" --data-dir "$work/data" \
  --bind 127.0.0.1:0 --workers 1 2>"$work/server.log" &
server=$!

addr=""
for _ in $(seq 300); do
  addr="$(sed -n 's/.*listening address=\([0-9.:]*\).*/\1/p' "$work/server.log" | head -n1)"
  [[ -n "$addr" ]] && break
  kill -0 "$server" 2>/dev/null || fail "spheroseg exited"
  sleep 0.1
done
[[ -n "$addr" ]] || fail "spheroseg did not start"
base="http://$addr"
ready=""
for _ in $(seq 300); do
  if curl -fsS -o /dev/null "$base/api/health/ready"; then ready=1; break; fi
  sleep 0.1
done
[[ -n "$ready" ]] || fail "spheroseg did not become ready"
echo "spheroseg ready at $base"

# One job with a result, for the routes that read a job.
json() { "$venv/bin/python" -c "import json, sys; print(json.load(sys.stdin)$1)"; }
job_id="$(curl -fsS -F "image=@$here/../fixtures/spheroid_core_8bit.png" "$base/api/jobs" | json '["jobs"][0]["id"]')"
state=""
for _ in $(seq 600); do
  state="$(curl -fsS "$base/api/jobs/$job_id" | json '["state"]')"
  [[ "$state" == completed || "$state" == failed ]] && break
  sleep 0.1
done
[[ "$state" == completed ]] || fail "job $job_id did not complete: $state"
echo "job $job_id completed"
export SPHEROSEG_JOB_ID="$job_id"

# Runs schemathesis from the temp directory (so no .hypothesis directory or report lands in the
# caller's tree) with the checks that matter here: no 5xx, and every answer as documented.
# /ws is a WebSocket upgrade, which schemathesis cannot speak.
fuzz() {
  local config="$1"
  shift
  (
    cd "$work"
    timeout --signal=TERM --kill-after=30 "$MAX_TIME_SECS" \
      "$venv/bin/schemathesis" --config-file "$config" run "$base/api/openapi.json" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
        --max-examples "$MAX_EXAMPLES" \
        --phases examples,coverage,fuzzing \
        --exclude-path /ws \
        --workers 2 \
        --request-timeout 90 \
        --seed "$SEED" \
        --generation-database none \
        --no-color \
        "$@"
  )
}

status=0
# First the reads, with the job and a health check that exist (reads.toml), so the answers that
# carry a job, a result, a mask, an image and a service's health are checked; then every operation
# with generated ids and names, which changes things (a bulk delete may remove the job).
echo "== reads of the job and the services that exist"
fuzz "$here/reads.toml" --include-method GET --exclude-path /api/events || status=1
echo "== every operation"
fuzz "$here/schemathesis.toml" || status=1

kill -TERM "$server"
wait "$server" || { echo "spheroseg exited with status $? after SIGTERM" >&2; status=1; }
server=""
if [[ $status -ne 0 ]]; then
  echo "--- server log (last 50 lines)" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit "$status"
