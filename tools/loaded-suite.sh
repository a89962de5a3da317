#!/usr/bin/env bash
# The test suite on a loaded machine: the suite's pytest RUNS times in a row in a clean clone of HEAD
# while `make bench` runs over and over in another clean clone, stopping at the first failed run.
#
#   tools/loaded-suite.sh [RUNS]            (default 3; OUT=/tmp/godel-loaded by default)
#
# Everything goes under $OUT: loaded.log (a line per event: when each run started, the load average
# then, how it ended), suite-N.log (each run's pytest output), bench-N.log (each bench pass),
# and the two clones. Its pytest basetemp is $OUT/pytest (service logs of a failed test are there).
# It takes about 45 minutes per run on 2 cores (a quiet `make test` takes about 28). Exit status:
# 0 when every run passed. Ctrl-C stops both loops.
set -uo pipefail

runs=${1:-3}
out=${OUT:-/tmp/godel-loaded}
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
log=$out/loaded.log

say() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$log"; }

rm -rf "$out"
mkdir -p "$out"
git clone -q "$repo" "$out/suite"
git clone -q "$repo" "$out/bench"
say "clones of $(git -C "$out/suite" rev-parse --short HEAD); $runs runs"
(cd "$out/bench" && make setup) > "$out/bench-setup.log" 2>&1 || { say "bench clone: make setup failed"; exit 1; }
(cd "$out/suite" && make setup console) > "$out/suite-setup.log" 2>&1 || { say "suite clone: make setup console failed"; exit 1; }

bench_loop() {
  local i=0
  cd "$out/bench" || return
  while [ ! -e "$out/stop" ]; do
    i=$((i + 1))
    say "bench pass $i starts"
    make bench > "$out/bench-$i.log" 2>&1
    say "bench pass $i ended with status $?"
  done
}
# Its own process group, so that stopping it stops the benchmark's servers too.
set -m
bench_loop &
bench=$!
set +m
stop_bench() {
  touch "$out/stop"
  # Ctrl-C for the benchmark: it stops the servers it started; what is left after a minute is killed.
  kill -INT -- -"$bench" 2>/dev/null
  for _ in $(seq 60); do kill -0 "$bench" 2>/dev/null || break; sleep 1; done
  kill -KILL -- -"$bench" 2>/dev/null
  wait "$bench" 2>/dev/null
  # The benchmark's services run in sessions of their own, out of the loop's group: stop what still
  # runs from the bench clone.
  pkill -TERM -f -- "$out/bench/" 2>/dev/null
  for _ in $(seq 30); do pgrep -f -- "$out/bench/" >/dev/null || break; sleep 1; done
  pkill -KILL -f -- "$out/bench/" 2>/dev/null
}
trap 'stop_bench; say "interrupted"; exit 130' INT TERM
sleep 60  # the first benchmark is up and loading the machine

status=0
for n in $(seq 1 "$runs"); do
  say "run $n starts, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  rm -rf "$out/pytest"
  (cd "$out/suite" && CI=true .venv/bin/python -m pytest -q -p no:cacheprovider --basetemp="$out/pytest") \
    > "$out/suite-$n.log" 2>&1
  status=$?
  say "run $n ended with status $status: $(grep -E '(passed|failed)' "$out/suite-$n.log" | tail -1)"
  [ $status -eq 0 ] || break
done
stop_bench
say "done"
exit $status
