#!/bin/bash
# Two real processes, fabriq on one side and plain libzmq on the other:
#   interop.sh FQ_PEER ZMQ_PEER SCHEME fq2zmq|zmq2fq PARTS [COUNT]
# With PARTS 1 the receiver binds, otherwise the sender binds, so both orders are exercised.
# The binder publishes its resolved address through a file; the connector starts after it.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../multiproc/harness.sh
. "$here/../multiproc/harness.sh"

fq_peer=$1 zmq_peer=$2 scheme=$3 direction=$4 parts=$5 count=${6:-500}
fqh_init "interop-$scheme-$direction-$parts" 60

case $direction in
fq2zmq) sender=$fq_peer receiver=$zmq_peer ;;
zmq2fq) sender=$zmq_peer receiver=$fq_peer ;;
*) fqh_fail "unknown direction $direction"; fqh_finish ;;
esac
case $scheme in
tcp) url="tcp://127.0.0.1:0" ;;
ipc) url="ipc://$FQH_DIR/interop.sock" ;;
*) fqh_fail "unknown scheme $scheme"; fqh_finish ;;
esac

if [[ $parts == 1 ]]; then
	fqh_start receiver "$receiver" pull bind "$url" "$count" "$parts" "$FQH_DIR/endpoint"
	fqh_wait_file "$FQH_DIR/endpoint" && endpoint=$(<"$FQH_DIR/endpoint")
	fqh_start sender "$sender" push connect "${endpoint:-none://}" "$count" "$parts"
else
	fqh_start sender "$sender" push bind "$url" "$count" "$parts" "$FQH_DIR/endpoint"
	fqh_wait_file "$FQH_DIR/endpoint" && endpoint=$(<"$FQH_DIR/endpoint")
	fqh_start receiver "$receiver" pull connect "${endpoint:-none://}" "$count" "$parts"
fi
fqh_expect_exit receiver 0
fqh_expect_exit sender 0
grep -h "received\|sent" "$FQH_DIR"/*.log >&2
fqh_check_leftovers
fqh_finish
