#!/usr/bin/env bash
# The prod key of the environments demo: a SoftHSM2 token in the workspace and an EC P-256 key pair
# generated inside it (never extractable); its public key goes where configs/environments.yaml's
# prod `key.public_key` says. Idempotent: an existing token and key pair only re-export the public key.
set -euo pipefail
cd "$(dirname "$0")/.."
ws="${ATTESTFLOW_WORKSPACE:-.attestflow}"
: "${ATTESTFLOW_PKCS11_PIN:?set ATTESTFLOW_PKCS11_PIN to the token user PIN (it is never written to config)}"
# The SO PIN only initialises the token; the demo makes a random one that nothing keeps.
export ATTESTFLOW_PKCS11_SO_PIN="${ATTESTFLOW_PKCS11_SO_PIN:-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')}"
"${PYTHON:-.venv/bin/python}" -m attestflow.signers init-token --label attestflow-prod --object prod-signing \
  --public-key "$ws/envs/prod/keys/prod-signing.pub.pem" --softhsm-dir "$ws/softhsm"
