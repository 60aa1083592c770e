#!/usr/bin/env bash
# `make demo-envs`: what a team sets up once so that `attestflow promote ... --to prod` can pass
# (README "From staging to prod"), idempotently, from a fresh clone:
#   1. prod's signing key inside a SoftHSM2 token (scripts/demo_token.sh) under a DEMO PIN;
#   2. a Prefect server that the promotion and the approver both reach (human approval pauses the
#      run on it): $PREFECT_API_URL when it answers (e.g. the stack's: source .attestflow/stack.env),
#      else `prefect server start` on the workspace's SQLite database, in the background;
#   3. prod's monitoring precondition: the drift monitor deployment named in configs/environments.yaml
#      (preconditions.monitoring.deployment) scheduled, and the two notifying automations;
#   4. a rollback drill of prod once prod has a champion (the first promotion is waived: nothing to
#      roll back to).
# Then it prints the next commands. `scripts/demo_envs.sh down` (make demo-envs-down) stops a
# server it started. Environment: PYTHON, PREFECT_PORT (4200), ATTESTFLOW_PKCS11_PIN (your own PIN
# instead of the demo one), ATTESTFLOW_NOTIFY_URL (where notifications go), ATTESTFLOW_WORKSPACE.
set -euo pipefail
cd "$(dirname "$0")/.."
ws="${ATTESTFLOW_WORKSPACE:-.attestflow}"
py="${PYTHON:-.venv/bin/python}"
state="$ws/demo-envs"
pidfile="$state/prefect.pid"
envfile="$state/env.sh"
mkdir -p "$state"

if [[ "${1:-}" == "down" ]]; then
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"
    echo "stopped the Prefect server (pid $(cat "$pidfile"))"
  else
    echo "no Prefect server of demo-envs running"
  fi
  rm -f "$pidfile"
  exit 0
fi

healthy() { "$py" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=3)' "$1" 2>/dev/null; }

# 1. The token and prod's key. A demo PIN: export your own ATTESTFLOW_PKCS11_PIN before the first run.
demo_pin="attestflow-demo-pin"
export ATTESTFLOW_PKCS11_PIN="${ATTESTFLOW_PKCS11_PIN:-$demo_pin}"
echo "== prod key: SoftHSM2 token attestflow-prod, object prod-signing"
PYTHON="$py" scripts/demo_token.sh

# 2. One Prefect server for the promotion and the approver.
echo "== Prefect server"
if [[ -n "${PREFECT_API_URL:-}" ]] && healthy "$PREFECT_API_URL"; then
  api="$PREFECT_API_URL"
  echo "using PREFECT_API_URL=$api"
else
  port="${PREFECT_PORT:-4200}"
  api="http://127.0.0.1:$port/api"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null && healthy "$api"; then
    echo "already running (pid $(cat "$pidfile")): $api"
  else
    if healthy "$api"; then
      echo "error: a server not started by demo-envs answers on port $port: export PREFECT_API_URL=$api" \
        "to use it, or PREFECT_PORT=ANOTHER" >&2
      exit 3
    fi
    mkdir -p "$ws/prefect"
    # The workspace's Prefect database (as make dashboard); the UI calls the API at this address.
    PREFECT_HOME="$PWD/$ws/prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_UI_API_URL="$api" \
      nohup "$py" -m prefect server start --host 127.0.0.1 --port "$port" >"$state/prefect.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 120); do
      healthy "$api" && break
      kill -0 "$(cat "$pidfile")" 2>/dev/null || { tail -20 "$state/prefect.log" >&2; exit 3; }
      sleep 1
    done
    healthy "$api" || { echo "error: the Prefect server did not answer in 120 s ($state/prefect.log)" >&2; exit 3; }
    echo "started (pid $(cat "$pidfile"), log $state/prefect.log): $api"
  fi
fi
export PREFECT_API_URL="$api"

# 3. Prod's monitoring: the deployment configs/environments.yaml names, and the automations.
echo "== prod monitoring"
export ATTESTFLOW_NOTIFY_URL="${ATTESTFLOW_NOTIFY_URL:-http://127.0.0.1:9/attestflow-demo-notifications}"
"$py" -m deployments.monitoring --env prod

# 4. The rollback drill, once prod has a champion to roll back from.
echo "== prod rollback drill"
drill_rc=0
drill_out=$("$py" -m flows.cli rollback-drill --env prod 2>&1) || drill_rc=$?
if [[ $drill_rc -eq 2 && "$drill_out" == *"nothing to roll back from"* ]] ||
  [[ "$drill_out" == *"version to roll back to"* ]]; then
  echo "waived: prod has no @champion or no @previous yet (nothing to roll back to, so the precondition" \
    "is waived); once it has both, run attestflow rollback-drill --env prod"
else
  echo "$drill_out"
  [[ $drill_rc -eq 0 ]] || echo "(the drill said no, exit $drill_rc: the next promotion will refuse with its reason)"
fi

{
  echo "export PREFECT_API_URL=$api"
  if [[ "$ATTESTFLOW_PKCS11_PIN" == "$demo_pin" ]]; then
    echo "export ATTESTFLOW_PKCS11_PIN=$demo_pin   # the DEMO PIN: a real token gets its own"
  fi
} >"$envfile"

cat <<EOF

Ready. In each terminal:   source $envfile
  attestflow run --env staging
  attestflow promote models:/credit-default@champion --to prod --reason "..."
     (it prints, while it waits: attestflow approve RUN_ID --digest DIGEST --approver NAME --reason "...")
  # in another terminal, as alice or bob (never the one who ran promote):
  ATTESTFLOW_ACTOR=alice attestflow approve RUN_ID --digest DIGEST --approver alice --reason "..."
  attestflow lineage models:/credit-default-prod@champion
  attestflow verify models:/credit-default-prod@champion --env prod
  attestflow rollback-drill --env prod     # keeps the next promotion's drill precondition fresh
Stop the Prefect server: make demo-envs-down
EOF
