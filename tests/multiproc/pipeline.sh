#!/bin/bash
# 1 source -> 2 workers -> 1 merger, four processes; every message accounted for exactly once.
#   pipeline.sh FQ_PIPELINE SCHEME [COUNT]
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=harness.sh
. "$here/harness.sh"

prog=$1 scheme=$2 count=${3:-20000}
fqh_init "pipeline-$scheme" 90

url() {
	case $scheme in
	tcp) echo "tcp://127.0.0.1:0" ;;
	ipc) echo "ipc://$FQH_DIR/$1.sock" ;;
	*) fqh_fail "unknown scheme $scheme"; fqh_finish ;;
	esac
}

fqh_start merger "$prog" merger "$(url merger)" "$FQH_DIR/merger.ep" "$count"
fqh_wait_file "$FQH_DIR/merger.ep" || fqh_finish
merger_ep=$(<"$FQH_DIR/merger.ep")
for w in 1 2; do
	fqh_start "worker$w" "$prog" worker "$w" "$(url "worker$w")" "$FQH_DIR/worker$w.ep" \
		"$merger_ep" "$FQH_DIR/stop"
done
for w in 1 2; do
	fqh_wait_file "$FQH_DIR/worker$w.ep" || fqh_finish
done
fqh_start source "$prog" source "$(<"$FQH_DIR/worker1.ep"),$(<"$FQH_DIR/worker2.ep")" "$count"

fqh_expect_exit merger 0
fqh_expect_exit source 0
touch "$FQH_DIR/stop" # the merger has everything: the workers may finish
fqh_expect_exit worker1 0
fqh_expect_exit worker2 0
grep -h "source:\|worker\|merger:" "$FQH_DIR"/*.log >&2
# Both workers must have carried traffic (the source deals round robin to both).
for w in 1 2; do
	grep -q "^merger: .* $w:[1-9]" "$FQH_DIR/merger.log" || fqh_fail "worker $w carried nothing"
done
fqh_check_leftovers
fqh_finish
