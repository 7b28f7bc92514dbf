#!/usr/bin/env bash
# Command two: install everything the tests need, make sure their services are up, run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
TIERWISE_EXTRAS="local,dev,postgres,eval,browser,research,agents,pydantic-ai,litellm,scale" bash scripts/install.sh
. .venv/bin/activate

# PostgreSQL: the project's machines run one on 127.0.0.1:5432; start or install it when missing.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
# Chromium for the computer-use tests: Debian's package, launched by path (no `playwright install` here).
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

export TIERWISE_TEST_POSTGRES_URL="${TIERWISE_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"

set +e
python -m pytest -q -p no:cacheprovider --durations=15 "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
