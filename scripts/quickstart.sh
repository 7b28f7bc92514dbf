#!/usr/bin/env bash
# Command one of a fresh machine: install, then run tierwise on the embedded default (no key, no network).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
echo "== tierwise models"; tierwise models
echo "== tierwise route (kind inferred offline)"
tierwise route "Classify this support ticket by urgency" --json
tierwise route "Fix the failing test in tests/test_parser.py" --json
tierwise route "Plan the migration of our billing service; the requirements are still unclear" --json
echo "== tierwise ask (routed, budgeted, validated, recorded)"
tierwise ask "Classify this support ticket by urgency: 'My card was stolen and I see charges I did not make.'" --json
echo "== a ready system: support triage (nano classifies, mini drafts from the KB, large takes escalations)"
tierwise run support-triage --input examples/support/tickets.csv --examples examples/support/examples.csv \
    --kb examples/support/kb --out .tierwise/triage.jsonl
echo "== tierwise spend"; tierwise spend --by tier
