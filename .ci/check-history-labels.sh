#!/usr/bin/env bash
# Fails when a tracked file speaks of the project's own history instead of the product:
# numbered work periods or issues ("session 9", "issue 13"), "current main", "this commit",
# "the previous model", or notes that live outside the repository. Figures carry a date and a
# machine instead. Run from the repository root (.ci/run does).
set -euo pipefail
pattern='(?<!dual[- ])\b(session|issue)s? [0-9]+|sessions [0-9]+-[0-9]+|current main|this commit|previous model|shared/(notes|tools|hooks)|DESIGN\.md'
if hits=$(git grep -n -I -i -P "$pattern" -- ':!*.lock' ':!.ci/check-history-labels.sh'); then
  echo "history labels in tracked files (date the figure and name the machine instead):" >&2
  echo "$hits" >&2
  exit 1
fi
echo "no history labels"
