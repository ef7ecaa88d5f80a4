#!/usr/bin/env bash
# Runs each fuzz target for $1 seconds, starting from the seeds in
# fuzz/corpus/TARGET. What libFuzzer finds goes to a scratch corpus, not the
# repo, so the committed corpus stays a handful of seeds. Prints each
# target's run count; exits non-zero on the first crash (its input is kept
# in fuzz/artifacts/TARGET/).
#
# Without a sanitizer (-s none): tenantry's own code forbids `unsafe`, and
# AddressSanitizer would cost 4 to 7 times the inputs per second here.
set -euo pipefail
seconds=$1
shift
cd "$(dirname "$0")/../fuzz"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in "$@"; do
  mkdir -p "$scratch/$target"
  log="$scratch/$target.log"
  if ! RUSTC_BOOTSTRAP=1 cargo fuzz run -s none "$target" "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$seconds" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz target $target failed" >&2
    exit 1
  fi
  echo "fuzz $target: $(grep -a '^Done' "$log")"
done
