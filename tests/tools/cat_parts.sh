#!/bin/sh
# fq-cat --parts: a vector of parts arrives whole and in order; "--" separates vectors; without
# --parts a received vector prints as one message.
. "$(dirname "$0")/lib.sh"

start pull "$FQ_CAT" --pull --connect "$(url parts)" --parts --quoted --count 2
run push "$FQ_CAT" --push --bind "$(url parts)" --parts --data first --data '' \
	--data 'third part' --count 2
expect_rc push 0
finish pull 0
expect_out pull '"first"\n""\n"third part"\n--\n"first"\n""\n"third part"\n'

printf 'from a file' >"$SCRATCH/part.txt"
start pull_hex "$FQ_CAT" --pull --connect "$(url hex)" --parts --hex --count 1
run push_hex "$FQ_CAT" --push --bind "$(url hex)" --parts --data AB --file "$SCRATCH/part.txt"
expect_rc push_hex 0
finish pull_hex 0
expect_out pull_hex '4142\n66726f6d20612066696c65\n'

# Without --parts the receiver shows a vector as one message, its parts concatenated.
start pull_flat "$FQ_CAT" --pull --connect "$(url flat)" --ascii --count 1
run push_flat "$FQ_CAT" --push --bind "$(url flat)" --parts --data abc --data def --data ghi
expect_rc push_flat 0
finish pull_flat 0
expect_out pull_flat 'abcdefghi\n'

pass
