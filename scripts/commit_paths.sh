#!/usr/bin/env bash
# Commit the staged versions of PATHs only, leaving whatever else is staged in the shared index alone.
#   git add PATH...; scripts/commit_paths.sh "message" PATH...
# Several people working in one tree share one git index; a plain `git commit` takes everything anyone
# has staged. This builds the commit from HEAD plus the given paths' staged blobs in a private index.
set -euo pipefail
msg="$1"; shift
idx=$(mktemp)
trap 'rm -f "$idx"' EXIT
GIT_INDEX_FILE=$idx git read-tree HEAD
for p in "$@"; do
  line=$(git ls-files -s -- "$p")
  if [ -z "$line" ]; then  # removed from the shared index: remove it here too
    GIT_INDEX_FILE=$idx git rm -q --cached --ignore-unmatch -- "$p"
    continue
  fi
  read -r mode hash _ <<<"$line"
  GIT_INDEX_FILE=$idx git update-index --add --cacheinfo "$mode,$hash,$p"
done
tree=$(GIT_INDEX_FILE=$idx git write-tree)
git update-ref HEAD "$(git commit-tree "$tree" -p HEAD -m "$msg")"
git log --oneline -1
