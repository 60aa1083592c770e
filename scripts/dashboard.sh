#!/usr/bin/env bash
# Starts the Prefect server and the MLflow UI on localhost against the workspace's state.
set -euo pipefail
cd "$(dirname "$0")/.."
ws="${ATTESTFLOW_WORKSPACE:-.attestflow}"
mkdir -p "$ws/prefect" "$ws/mlartifacts"
prefect_port="${PREFECT_PORT:-4200}"
mlflow_port="${MLFLOW_PORT:-5000}"
export PREFECT_HOME="$PWD/$ws/prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false
# The UI calls the API at this address; it defaults to port 4200 whatever --port says.
export PREFECT_UI_API_URL="http://127.0.0.1:$prefect_port/api"
prefect server start --host 127.0.0.1 --port "$prefect_port" &
mlflow ui --backend-store-uri "sqlite:///$PWD/$ws/mlflow.db" --default-artifact-root "$PWD/$ws/mlartifacts" \
  --host 127.0.0.1 --port "$mlflow_port" &
trap 'kill $(jobs -p) 2>/dev/null' EXIT INT TERM
echo "Prefect UI: http://127.0.0.1:$prefect_port"
echo "MLflow UI:  http://127.0.0.1:$mlflow_port"
echo "To send runs to this Prefect server: export PREFECT_API_URL=http://127.0.0.1:$prefect_port/api"
wait
