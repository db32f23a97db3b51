#!/bin/sh
# fq-cat PUB -> SUB with prefix filters. A subscriber may join late (the publisher repeats,
# with a pause), so the test asserts on what arrived, not on when.
. "$(dirname "$0")/lib.sh"

start sub "$FQ_CAT" --sub --connect "$(url pubsub)" --subscribe keep --subscribe also \
	--count 6 --ascii
run pub "$FQ_CAT" --pub --bind "$(url pubsub)" --delay 0.2 --interval 0.02 --count 40 \
	--data keep-1 --data drop-1 --data also-2 --data ke --data kee
expect_rc pub 0
finish sub 0
lines=$(wc -l <"$SCRATCH/sub.out")
[ "$lines" -eq 6 ] || fail "subscriber printed $lines lines, expected 6"
if grep -Evq '^(keep-1|also-2)$' "$SCRATCH/sub.out"; then
	fail "subscriber got messages its prefixes filter out"
fi
expect_grep sub out '^keep-1$'
expect_grep sub out '^also-2$'

pass
