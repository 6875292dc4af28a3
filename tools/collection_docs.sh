#!/usr/bin/env bash
# Build teamflow.platform's collection docs site: antsibull-docs renders the
# collection (roles, modules, filters) to reStructuredText, Sphinx builds HTML
# from it with every warning an error.
#
#   tools/collection_docs.sh [OUT]     (default: artifacts/docs; HTML in OUT/html)
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/artifacts/docs}
export PATH="$ROOT/.venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$ROOT"
rm -rf "$OUT/rst" "$OUT/html"
mkdir -p "$OUT/rst"
chmod og-w "$OUT/rst"  # antsibull-docs wants the directory writable by its owner only
antsibull-docs --config-file "$ROOT/docs/collection/antsibull-docs.cfg" collection \
    --use-current --squash-hierarchy --fail-on-error --dest-dir "$OUT/rst" teamflow.platform
sphinx-build -b html -q -W --keep-going -c "$ROOT/docs/collection" "$OUT/rst" "$OUT/html"
echo "$OUT/html/index.html"
