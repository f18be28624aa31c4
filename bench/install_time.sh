#!/usr/bin/env bash
# `make install` from a fresh clone of each given commit, one after the other: wall time, venv size,
# package count. pip's cache is shared, so every commit after the first finds the same warm cache;
# run the commits twice (A B A B) to see that order does not matter.
#   bash bench/install_time.sh <commit> [<commit> ...]
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo "| commit | torch | make install (s) | venv | packages |"
echo "|---|---|---:|---:|---:|"
i=0
for commit in "$@"; do
  i=$((i + 1))
  dir="$work/c$i"
  git clone -q "$repo" "$dir"
  git -C "$dir" checkout -q "$commit"
  start=$(date +%s.%N)
  make -C "$dir" install > "$work/log$i" 2>&1 || { tail -20 "$work/log$i"; exit 1; }
  end=$(date +%s.%N)
  torch=$("$dir/.venv/bin/python" -c 'import torch; print(torch.__version__)')
  size=$(du -sh "$dir/.venv" | cut -f1)
  pkgs=$("$dir/.venv/bin/pip" list 2>/dev/null | tail -n +3 | wc -l)
  printf '| %s | %s | %.0f | %s | %s |\n' "$(git -C "$dir" rev-parse --short HEAD)" "$torch" "$(echo "$end - $start" | bc)" "$size" "$pkgs"
  rm -rf "$dir"
done
