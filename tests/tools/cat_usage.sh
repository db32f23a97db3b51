#!/bin/sh
# fq-cat command-line errors exit 2 and say why; --help and --version exit 0.
. "$(dirname "$0")/lib.sh"

U=$(url usage)
run help "$FQ_CAT" --help
expect_rc help 0
expect_grep help out '^Usage: fq-cat'
run version "$FQ_CAT" --version
expect_rc version 0
expect_grep version out '^fq-cat \(fabriq\) [0-9]+\.[0-9]+\.[0-9]+$'

# One bad command line per line; "@" stands for a valid ipc address.
while IFS= read -r line; do
	[ -n "$line" ] || continue
	# shellcheck disable=SC2046 # split on purpose
	set -- $(echo "$line" | sed "s|@|$U|g")
	run bad "$FQ_CAT" "$@"
	[ "$RC" = 2 ] || fail "'fq-cat $line' exited with $RC, expected 2"
	[ -s "$SCRATCH/bad.err" ] || fail "'fq-cat $line' exited 2 without a message"
	[ ! -s "$SCRATCH/bad.out" ] || fail "'fq-cat $line' printed to stdout"
done <<'LIST'
--pull
--bind @
--push --pull --bind @
--pull --bind @ --bogus
--pull --bind @ extra
--pull --bind @ --count -1
--pull --bind @ --count many
--push --bind @ --data x --interval soon
--pull --bind @ --recv-timeout -1
--pull --bind @ --raw --hex
--push --bind @ --data x --subscribe x
--pull --bind @ --data x
--sub --bind @ --file /dev/null
--rep --bind @ --data a --data b
--pull --bind @ --set rcv_hwm
--pull --bind @ --set no_such_option=1
--pull --bind @ --set rcv_hwm=lots
--transport no-such-transport --pull --bind @
--pull --bind nosuchscheme://x
LIST

pass
