#!/bin/sh
# One-shot `init` service of docker-compose.yml (replaces the seed's create_image.sh/myenv):
#  1. pins the CAS certificate from the CAS's own state volume (read-only) and
#     publishes it on the cas-public volume for the workloads (CLOISTER_CAS_CERT);
#  2. measures the runtime and redis-server in this image (the API image is built
#     FROM the same runtime base, so its Python measurement is the same);
#  3. enrols the node's LAS (its quoting key) for this identity's sessions;
#  4. creates the Redis and Flask sessions from deploy/policies when they are absent,
#     updates one only when its text (template values filled in) differs from what the
#     CAS holds, and otherwise leaves it alone: an update re-issues the session's
#     certificates, which services started earlier would no longer trust. This service
#     keeps its client identity on a volume, so it stays the sessions' CREATOR across runs.
# The fspf key and tag come from the compose secret `api-seal` (build.sh's seal
# output); they go to the CAS inside the policy and are never printed.
set -eu
: "${FLASK_SESSION:?set FLASK_SESSION in deploy/compose/.env (see .env.example)}"
: "${REDIS_SESSION:?set REDIS_SESSION in deploy/compose/.env (see .env.example)}"
CAS_STATE="${CAS_STATE:-/cas-state}"
CAS_PUBLIC="${CAS_PUBLIC:-/var/lib/cloister/public}"
SEAL_FILE="${SEAL_FILE:-/run/secrets/api-seal}"
POLICIES="${POLICIES:-/policies}"
REDIS_HOST="${REDIS_HOST:-redis}"

cloister cas show-certificate --state "$CAS_STATE" > "$CAS_PUBLIC/cas-ca.pem.new"
mv "$CAS_PUBLIC/cas-ca.pem.new" "$CAS_PUBLIC/cas-ca.pem"
export CLOISTER_CAS_CERT="$CAS_PUBLIC/cas-ca.pem"
export CLOISTER_CAS_ADDR="${CLOISTER_CAS_ADDR:-cas:8081}"

if [ ! -r "$SEAL_FILE" ]; then
  echo "create-sessions: no seal output at $SEAL_FILE: run deploy/images/build.sh first" >&2
  exit 2
fi
SCONE_FSPF_KEY="$(sed -n 's/^fspf_key: *//p' "$SEAL_FILE")"
SCONE_FSPF_TAG="$(sed -n 's/^fspf_tag: *//p' "$SEAL_FILE")"
# the uids compose runs the workloads under (docker-compose.yml), pinned by the sessions
REDIS_UID="${REDIS_UID:-10001}"
API_UID="${API_UID:-10002}"
MRENCLAVE="$(cloister measure)"
MRENCLAVE_REDIS="$(cloister measure redis-server)"
# through the environment (--use-env), not the command line: argv is world-readable
export FLASK_SESSION REDIS_SESSION REDIS_HOST MRENCLAVE MRENCLAVE_REDIS SCONE_FSPF_KEY SCONE_FSPF_TAG
export REDIS_UID API_UID
# simulation evidence counts only from a LAS the sessions' owner enrolled: this node's
cloister platform enroll --las "${CLOISTER_LAS_ADDR:-/run/cloister/las.sock}" --label compose-las

# exit 0: the session on the CAS (stdin) says what FILE says with these values; 1: it
# differs; 3: there is none. Compared as YAML, the predecessor (set by updates) left out.
SAME_AS_STORED='
import os, sys, yaml
from cloister.policy import substitute_variables
stored = sys.stdin.read()
if not stored.strip():
    sys.exit(3)
have = yaml.safe_load(stored)
have.pop("predecessor", None)
with open(sys.argv[1], encoding="utf-8") as f:
    want = yaml.safe_load(substitute_variables(f.read(), os.environ))
want.pop("predecessor", None)
sys.exit(0 if want == have else 1)
'

apply() {  # apply FILE SESSION
  # the stored text holds the fspf key: it goes through a pipe, never a file
  status=0
  cloister session read "$2" 2>/dev/null | python3 -c "$SAME_AS_STORED" "$1" || status=$?
  case "$status" in
    0) echo "create-sessions: session $2 unchanged" ;;
    1) echo "create-sessions: updating session $2 (its policy changed; its certificates are re-issued)"
       cloister session update "$1" --use-env ;;
    3) echo "create-sessions: creating session $2"
       cloister session create "$1" --use-env ;;
    *) echo "create-sessions: cannot compare session $2 with $1" >&2; exit 2 ;;
  esac
}
apply "$POLICIES/redis.yml" "$REDIS_SESSION"   # first: flask.yml imports its secrets
apply "$POLICIES/flask.yml" "$FLASK_SESSION"
echo "create-sessions: done; API CA: curl --cacert <(cloister values $FLASK_SESSION api_ca_cert) ..."
