#!/bin/sh
# fq-cat timeouts and stopping: nothing received exits 1, fewer than --count exits 1, a stream
# that ends after some messages exits 0, a blocked send times out with 1, a lost REQ
# reply exits 1, SIGTERM stops a receiver cleanly.
. "$(dirname "$0")/lib.sh"

run nothing "$FQ_CAT" --pull --connect "$(url nobody)" --recv-timeout 0.2
expect_rc nothing 1
expect_out nothing ''
expect_grep nothing err 'timed out'

start short "$FQ_CAT" --pull --connect "$(url short)" --count 3 --recv-timeout 1 --ascii
run push_short "$FQ_CAT" --push --bind "$(url short)" --data only-one
expect_rc push_short 0
finish short 1
expect_out short 'only-one\n'

start stream "$FQ_CAT" --pull --connect "$(url stream)" --recv-timeout 1 --ascii
run push_stream "$FQ_CAT" --push --bind "$(url stream)" --data a --data b
expect_rc push_stream 0
finish stream 0
expect_out stream 'a\nb\n'

# A bound PUSH without peers cannot send.
run send "$FQ_CAT" --push --bind "$(url lonely)" --data x --send-timeout 0.2
expect_rc send 1
expect_grep send err 'FQ_ETIMEDOUT'

run req "$FQ_CAT" --req --connect "$(url noreply)" --data x --recv-timeout 0.2
expect_rc req 1
expect_grep req err 'FQ_ETIMEDOUT'

# SIGTERM: a receiver running until stopped closes its socket and exits 0.
start forever "$FQ_CAT" --pull --bind "$(url forever)" -v
wait_for forever '^fq-cat: endpoint '
eval "kill -TERM \$PID_forever"
finish forever 0

pass
