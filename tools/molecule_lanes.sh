#!/usr/bin/env bash
# Run the Molecule scenarios in lanes, the lanes at the same time (`make molecule`).
#   tools/molecule_lanes.sh "pacs_upgrade pacs_rollback" "lab pacs_resume pacs_precheck_refusal"
# Each argument is a lane: scenarios run one after the other with `molecule test -s <scenario>`,
# as `molecule test --all` would (a lane stops at its first failed scenario; the other lane goes
# on). Scenarios of different lanes must not share a host, a published port or a named volume
# (the PACS scenarios use mol-upgrade-pacs in one lane and mol-pacs2 in the other).
# Every scenario under molecule/ must be in exactly one lane: a scenario left out would be a test
# that silently never runs, so the script refuses to start.
# Each scenario's output goes to results/molecule/<scenario>.log and is printed whole, scenario by
# scenario, once every lane has ended; then each scenario's verdict, with a failed scenario's
# failure lines and the end of its log again (a CI log cut to its end still shows them).
# Exit 0 only when every scenario passed.
set -uo pipefail
cd "$(dirname "$0")/.."
logdir=results/molecule
mkdir -p "$logdir"
rm -f "$logdir"/*.status

present=$(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | xargs -n1 basename | sort)
given=$(printf '%s\n' $* | sort)
if [ "$present" != "$given" ]; then
  echo "molecule lanes: the lanes must name every scenario exactly once."
  echo "  scenarios under molecule/: $(echo $present)"
  echo "  in the lanes:              $(echo $given)"
  echo "  Fix MOLECULE_LANES in the Makefile."
  exit 2
fi

start_all=$(date +%s)
pids=()
lane_no=0
for lane in "$@"; do
  lane_no=$((lane_no + 1))
  (
    for scenario in $lane; do
      start=$(date +%s)
      echo "molecule: lane $lane_no: $scenario started"
      if molecule test -s "$scenario" >"$logdir/$scenario.log" 2>&1; then
        echo "passed in $(( $(date +%s) - start )) s" >"$logdir/$scenario.status"
        echo "molecule: lane $lane_no: $scenario $(cat "$logdir/$scenario.status")"
      else
        echo "FAILED after $(( $(date +%s) - start )) s (log: $logdir/$scenario.log)" >"$logdir/$scenario.status"
        echo "molecule: lane $lane_no: $scenario $(cat "$logdir/$scenario.status")"
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

for scenario in $*; do
  [ -f "$logdir/$scenario.log" ] || continue
  echo
  echo "================================ molecule scenario $scenario ================================"
  cat "$logdir/$scenario.log"
done
# The verdict comes last, so that a CI log cut to its end still names the failed scenario and
# shows how it failed.
echo
for scenario in $*; do
  if [ -f "$logdir/$scenario.status" ]; then
    status=$(cat "$logdir/$scenario.status")
  else
    status="not run (an earlier scenario of its lane failed)"
  fi
  echo "molecule: $scenario: $status"
  case $status in
    FAILED*)
      echo "---- $scenario: the lines of its log that name a failure (line numbers of $logdir/$scenario.log)"
      grep -n -E 'fatal:|FAILED!|ERROR|failed=[1-9]|Error' "$logdir/$scenario.log" | head -20
      echo "---- $scenario: the last 60 lines of its log"
      tail -n 60 "$logdir/$scenario.log"
      ;;
  esac
done
echo "molecule: every lane ended after $(( $(date +%s) - start_all )) s: $([ $failed = 0 ] && echo 'all passed' || echo 'FAILED')"
exit $failed
