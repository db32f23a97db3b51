#!/bin/sh
# fq-cat output formats on bytes that need care: NUL, control bytes, quotes, backslash, 0x7f,
# 0xff, and an empty message.
. "$(dirname "$0")/lib.sh"

printf '\000\001A"\\\n\177\377z' >"$SCRATCH/bytes.bin"

# fmt NAME FLAG: send bytes.bin and an empty message, receive them with FLAG.
fmt() {
	start "$1" "$FQ_CAT" --pull --connect "$(url "$1")" --count 2 "$2"
	run "push_$1" "$FQ_CAT" --push --bind "$(url "$1")" --file "$SCRATCH/bytes.bin" --data ''
	expect_rc "push_$1" 0
	finish "$1" 0
}

fmt hex --hex
expect_out hex '000141225c0a7fff7a\n\n'
fmt quoted --quoted
expect_out quoted '"\\000\\001A\\"\\\\\\n\\177\\377z"\n""\n'
fmt ascii --ascii
expect_out ascii '..A"\\...z\n\n'
fmt raw --raw
cmp -s "$SCRATCH/bytes.bin" "$SCRATCH/raw.out" || fail "--raw changed the bytes"

pass
