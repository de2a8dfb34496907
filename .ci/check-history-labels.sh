#!/usr/bin/env bash
# Fails when a tracked file speaks of the project's own history instead of the product:
# numbered work periods or numbered tickets, the name of the development branch's head, a
# reference to the commit being made, the model that came before, or notes that live outside
# the repository. Figures carry a date and a machine instead. Run from the repository root
# (.ci/run does). The words are assembled below so that this file does not match itself.
set -euo pipefail
period='sess''ion' ticket='iss''ue'
pattern="(?<!dual[- ])\\b(${period}|${ticket})s? [0-9]+|${period}s [0-9]+-[0-9]+|cur""rent main|th""is commit|prev""ious model|sha""red/(notes|tools|hooks)|DES""IGN\\.md"
if hits=$(git grep -n -I -i -P "$pattern" -- ':!*.lock'); then
  echo "history labels in tracked files (date the figure and name the machine instead):" >&2
  echo "$hits" >&2
  exit 1
fi
echo "no history labels"
