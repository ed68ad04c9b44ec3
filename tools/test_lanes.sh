#!/usr/bin/env bash
# Run the Molecule scenarios (and, when a lane names them, the pytest suites) in lanes, the lanes at
# the same time (`make molecule`, the last part of `make test`):
#   tools/test_lanes.sh "unit integration workstations" "lab pacs_upgrade" "pacs_resume ris_rollback"
#   tools/test_lanes.sh --molecule-only "unit integration workstations" "lab pacs_upgrade" ...
# Each argument is a lane: its items run one after the other, the lanes at once. An item is either a
# pytest suite (`unit`, `integration`: `pytest tests/<suite>`, the unit suite with the words of
# PYTEST_UNIT_ARGS before, `-n 2 --dist loadfile` from the Makefile) or a Molecule scenario
# (`molecule test -s <scenario>`, as `molecule test --all` would). A lane stops at its first failed
# item; the other lanes go on. With --molecule-only the pytest suites are left out.
# Items of different lanes run at the same time, so they must not share a host, a published port, a
# named volume or a system service (tests/unit/test_molecule_ports.py checks ports and names;
# docs/testing.md lists the rest, and why `make test` runs the suites before the lanes).
# Every scenario under molecule/ must be in exactly one lane: a scenario left out would be a test
# that silently never runs, so the script refuses to start; a suite may be named once at most.
# Each item's output goes to results/lanes/<item>.log and is printed whole, item by item, once
# every lane has ended; then each item's verdict, with a failed item's failure lines and the end of
# its log again (a CI log cut to its end still shows them).
# Exit 0 only when every item passed.
set -uo pipefail
cd "$(dirname "$0")/.."
SUITES="unit integration"

molecule_only=0
if [ "${1:-}" = "--molecule-only" ]; then
  molecule_only=1
  shift
fi
lanes=()
for lane in "$@"; do
  kept=""
  for item in $lane; do
    if [[ " $SUITES " == *" $item "* ]] && [ $molecule_only = 1 ]; then continue; fi
    kept="$kept $item"
  done
  lanes+=("${kept# }")
done

logdir=results/lanes
mkdir -p "$logdir"
rm -f "$logdir"/*.status

all_items=$(printf '%s\n' ${lanes[*]})
present=$(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | xargs -n1 basename | sort)
given=$(echo "$all_items" | grep -v -x -F -e unit -e integration | sort)
if [ "$present" != "$given" ]; then
  echo "test lanes: the lanes must name every Molecule scenario exactly once."
  echo "  scenarios under molecule/: $(echo $present)"
  echo "  in the lanes:              $(echo $given)"
  echo "  Fix TEST_LANES in the Makefile."
  exit 2
fi
for suite in $SUITES; do
  if [ "$(echo "$all_items" | grep -c -x -F "$suite")" -gt 1 ]; then
    echo "test lanes: the suite $suite is named more than once. Fix TEST_LANES in the Makefile."
    exit 2
  fi
done

kind() {
  if [[ " $SUITES " == *" $1 "* ]]; then echo "pytest suite"; else echo "molecule scenario"; fi
}

run_item() {
  if [ "$1" = unit ]; then
    # shellcheck disable=SC2086  # the arguments are words: "-n 2 --dist loadfile"
    pytest ${PYTEST_UNIT_ARGS:-} tests/unit
  elif [[ " $SUITES " == *" $1 "* ]]; then
    pytest "tests/$1"
  else
    molecule test -s "$1"
  fi
}

start_all=$(date +%s)
pids=()
lane_no=0
for lane in "${lanes[@]}"; do
  lane_no=$((lane_no + 1))
  [ -n "$lane" ] || continue
  (
    for item in $lane; do
      start=$(date +%s)
      echo "lanes: lane $lane_no: $item started"
      if run_item "$item" >"$logdir/$item.log" 2>&1; then
        echo "passed in $(( $(date +%s) - start )) s" >"$logdir/$item.status"
        echo "lanes: lane $lane_no: $item $(cat "$logdir/$item.status")"
      else
        echo "FAILED after $(( $(date +%s) - start )) s (log: $logdir/$item.log)" >"$logdir/$item.status"
        echo "lanes: lane $lane_no: $item $(cat "$logdir/$item.status")"
        exit 1
      fi
    done
  ) &
  pids+=($!)
done

failed=0
for pid in "${pids[@]}"; do
  wait "$pid" || failed=1
done

for item in ${lanes[*]}; do
  [ -f "$logdir/$item.log" ] || continue
  echo
  echo "================================ $(kind "$item") $item ================================"
  cat "$logdir/$item.log"
done
# The verdict comes last, so that a CI log cut to its end still names the failed item and shows
# how it failed: first the end of each failed item's log, then every item's status, then the lines of
# each failed item's log that say why (a pytest assertion, a fatal task), just before the last line.
for item in ${lanes[*]}; do
  case $(cat "$logdir/$item.status" 2>/dev/null) in
    FAILED*)
      echo
      echo "---- $item: the last 60 lines of its log"
      tail -n 60 "$logdir/$item.log"
      ;;
  esac
done
echo
for item in ${lanes[*]}; do
  if [ -f "$logdir/$item.status" ]; then
    status=$(cat "$logdir/$item.status")
  else
    status="not run (an earlier item of its lane failed)"
  fi
  echo "lanes: $item: $status"
done
for item in ${lanes[*]}; do
  case $(cat "$logdir/$item.status" 2>/dev/null) in
    FAILED*)
      echo "---- $item: why (the lines of $logdir/$item.log that name a failure, with their numbers)"
      grep -n -E '(^|[│| ]) *E  |FAILED |fatal:|FAILED!|failed=[1-9]|CRITICAL' "$logdir/$item.log" | cut -c1-240 | tail -n 12
      ;;
  esac
done
echo "lanes: every lane ended after $(( $(date +%s) - start_all )) s: $([ $failed = 0 ] && echo 'all passed' || echo 'FAILED')"
exit $failed
