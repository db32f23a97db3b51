#!/bin/sh
# fq-cat REQ <-> REP: echo, fixed reply, and vectors of parts both ways.
. "$(dirname "$0")/lib.sh"

start rep "$FQ_CAT" --rep --bind "$(url echo)" --count 2 --ascii
run req "$FQ_CAT" --req --connect "$(url echo)" --data ping --data pong --quoted
expect_rc req 0
finish rep 0
expect_out req '"ping"\n"pong"\n'
expect_out rep 'ping\npong\n'

start rep_fixed "$FQ_CAT" --rep --bind "$(url fixed)" --count 3 --data answer --quoted
run req_fixed "$FQ_CAT" --req --connect "$(url fixed)" --data question --count 3 --ascii
expect_rc req_fixed 0
finish rep_fixed 0
expect_out req_fixed 'answer\nanswer\nanswer\n'
expect_out rep_fixed '"question"\n"question"\n"question"\n'

start rep_parts "$FQ_CAT" --rep --bind "$(url parts)" --count 1 --parts --quoted
run req_parts "$FQ_CAT" --req --connect "$(url parts)" --parts --data head --data body --quoted
expect_rc req_parts 0
finish rep_parts 0
expect_out rep_parts '"head"\n"body"\n'
expect_out req_parts '"head"\n"body"\n'

pass
