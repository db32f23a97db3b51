#!/bin/sh
# fq-cat PUSH -> PULL: text messages in order, a 3 MiB binary file byte for byte, stdin,
# connect before bind, and tcp with a port picked by the system.
. "$(dirname "$0")/lib.sh"

# The sender binds: a bound PUSH blocks until the puller is connected, so nothing is lost
# however the two processes are scheduled.
start pull "$FQ_CAT" --pull --connect "$(url text)" --count 3 --ascii
run push "$FQ_CAT" --push --bind "$(url text)" --data one --data two --data three
expect_rc push 0
finish pull 0
expect_out pull 'one\ntwo\nthree\n'

head -c 3145728 /dev/urandom >"$SCRATCH/big.bin"
start pull_big "$FQ_CAT" --pull --connect "$(url big)" --count 1 --raw
run push_big "$FQ_CAT" --push --bind "$(url big)" --file "$SCRATCH/big.bin"
expect_rc push_big 0
finish pull_big 0
want=$(sha256sum <"$SCRATCH/big.bin" | cut -d' ' -f1)
got=$(sha256sum <"$SCRATCH/pull_big.out" | cut -d' ' -f1)
[ "$want" = "$got" ] || fail "3 MiB file: sha256 $got, expected $want"

# All of stdin is one message.
start pull_stdin "$FQ_CAT" --pull --connect "$(url stdin)" --count 1 --quoted
printf 'line 1\nline 2' | timeout "$LIMIT" "$FQ_CAT" --push --bind "$(url stdin)" \
	>"$SCRATCH/push_stdin.out" 2>"$SCRATCH/push_stdin.err" || fail "push from stdin failed"
finish pull_stdin 0
expect_out pull_stdin '"line 1\\nline 2"\n'

# Connect before bind: the pusher's message waits for the puller (linger covers a late bind).
start push_early "$FQ_CAT" --push --connect "$(url late)" --data early --set linger=-1
start pull_late "$FQ_CAT" --pull --bind "$(url late)" --count 1 --ascii
finish pull_late 0
finish push_early 0
expect_out pull_late 'early\n'

# tcp, port 0: -v prints the resolved endpoint, which the pusher then connects to.
start pull_tcp "$FQ_CAT" --pull --bind tcp://127.0.0.1:0 --count 2 --ascii -v
wait_for pull_tcp '^fq-cat: endpoint tcp://127\.0\.0\.1:[1-9][0-9]*$'
endpoint=$(sed -n 's/^fq-cat: endpoint //p' "$SCRATCH/pull_tcp.err" | head -n 1)
run push_tcp "$FQ_CAT" --push --connect "$endpoint" --data over --data tcp --set linger=-1
expect_rc push_tcp 0
finish pull_tcp 0
expect_out pull_tcp 'over\ntcp\n'

pass
