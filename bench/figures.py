#!/usr/bin/python3
"""Reproduce the figures of docs/performance.md: fabriq's zeromq transport against raw libzmq.

Runs fq-bench --baseline zmq --json several times per case, each time after waiting until the
machine is idle, and prints a Markdown table of medians. Each fq-bench run measures fabriq and
then raw libzmq back to back, so the table also gives the median of the per-run ratios, which
is steadier than the ratio of medians on a noisy machine.

Usage: bench/figures.py --bench build/bench/bench/fq-bench [--runs 3] [--cpus 0,1] [--quick]
Needs only the Python standard library.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

# (pattern, size, count, extra options): the cases of docs/performance.md. With --adopt the
# fabriq sender sends one preallocated buffer, as the raw baseline does from 4 KiB on.
CASES = [
    ("thr", "64", 2000000, []),
    ("thr", "1M", 20000, []),
    ("thr", "1M", 20000, ["--adopt"]),
    ("lat", "64", 20000, []),
    ("lat", "1M", 2000, []),
]
SCHEMES = ["tcp", "ipc"]


def cpu_times():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields[:8]), idle


def wait_idle(limit=600, window=2.0, want=0.95):
    """Wait until the CPUs were at least `want` idle over `window` seconds."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        t0, i0 = cpu_times()
        time.sleep(window)
        t1, i1 = cpu_times()
        if t1 > t0 and (i1 - i0) / (t1 - t0) >= want:
            return True
    print("figures: the machine never became idle; measuring anyway", file=sys.stderr)
    return False


def run(bench, scheme, pattern, size, count, extra, cpus):
    cmd = [bench, "--transport", "zeromq", "--scheme", scheme, "--pattern", pattern,
           "--size", size, "--count", str(count), "--baseline", "zmq", "--json"] + extra
    if cpus:
        cmd += ["--cpus", cpus]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True,
                         timeout=600).stdout
    rows = {}
    for line in out.splitlines():
        r = json.loads(line)
        rows[r["impl"]] = r
    return " ".join(cmd[1:]), rows["fabriq"], rows["zmq"]


def fmt_rate(v):
    return "%.2f M/s" % (v / 1e6) if v >= 1e5 else "%.0f /s" % v


def fmt_bytes(v):
    return "%.2f GB/s" % (v / 1e9) if v >= 1e9 else "%.0f MB/s" % (v / 1e6)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", required=True, help="path to fq-bench")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cpus", default=None, help="pin: sender CPU,receiver CPU")
    ap.add_argument("--quick", action="store_true", help="counts / 10 (a trial, not figures)")
    args = ap.parse_args()

    print("| scheme | pattern | size | fabriq | raw libzmq | fabriq/raw (median of runs) "
          "| range | CPU s snd/rcv fabriq | CPU s snd/rcv raw |")
    print("|---|---|---|---|---|---|---|---|---|")
    commands = []
    for scheme in SCHEMES:
        for pattern, size, count, extra in CASES:
            if args.quick:
                count = max(count // 10, 100)
            fq, raw, ratios = [], [], []
            for _ in range(args.runs):
                wait_idle()
                cmd, f, z = run(args.bench, scheme, pattern, size, count, extra,
                                args.cpus)
                fq.append(f)
                raw.append(z)
                if pattern == "thr":
                    ratios.append(f["msgs_per_s"] / z["msgs_per_s"])
                else:
                    ratios.append(f["lat_p50_us"] / z["lat_p50_us"])
            commands.append(cmd)

            def med(rows, key):
                return statistics.median(r[key] for r in rows)

            if pattern == "thr":
                cell_f = "%s, %s" % (fmt_rate(med(fq, "msgs_per_s")),
                                     fmt_bytes(med(fq, "bytes_per_s")))
                cell_z = "%s, %s" % (fmt_rate(med(raw, "msgs_per_s")),
                                     fmt_bytes(med(raw, "bytes_per_s")))
            else:
                cell_f = "p50 %.1f us, p99 %.1f us" % (med(fq, "lat_p50_us"),
                                                       med(fq, "lat_p99_us"))
                cell_z = "p50 %.1f us, p99 %.1f us" % (med(raw, "lat_p50_us"),
                                                       med(raw, "lat_p99_us"))
            print("| %s | %s | %s | %s | %s | %.2f | %.2f-%.2f | %.2f / %.2f | %.2f / %.2f |" % (
                scheme, pattern, " ".join([size] + extra), cell_f, cell_z, statistics.median(ratios),
                min(ratios), max(ratios), med(fq, "cpu_s_sender"), med(fq, "cpu_s_receiver"),
                med(raw, "cpu_s_sender"), med(raw, "cpu_s_receiver")))
            sys.stdout.flush()
    print()
    print("Commands (each run %d times):" % args.runs)
    for c in commands:
        print("    fq-bench " + c)


if __name__ == "__main__":
    main()
