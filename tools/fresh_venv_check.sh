#!/usr/bin/env bash
# Runs the README's two commands, exactly as written there, in a new venv on a fresh clone,
# and times each. Usage: tools/fresh_venv_check.sh [workdir]
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=${1:-$(mktemp -d)}
git clone -q "$repo" "$work/tfdistill"
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
cd "$work/tfdistill"
main_cmd=$(sed -n 's/^    \(pip install -e \. .*\)$/\1/p' README.md | head -n 1)
test_cmd=$(sed -n 's/^    \(pip install -e "\.\[test\]".*\)$/\1/p' README.md | head -n 1)
[[ -n "$main_cmd" && -n "$test_cmd" ]] || { echo "README commands not found" >&2; exit 1; }
for cmd in "$test_cmd" "$main_cmd"; do
  echo "== $cmd"
  start=$(date +%s)
  bash -c "$cmd"
  echo "== took $(( $(date +%s) - start )) s"
done
