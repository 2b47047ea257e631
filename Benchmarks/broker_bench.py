#!/usr/bin/env python3
"""End-to-end broker benchmark: starts fjord (or another broker command) on 127.0.0.1, runs
fjord-loadgen's produce then consume phase, and reports throughput, latency, and the broker's
CPU-seconds (from /proc/PID/stat) per phase and per GB moved.

    python3 Benchmarks/broker_bench.py --fjord .build/release/fjord --loadgen .build/fjord-loadgen \\
        --backend memory --messages 1000000 --size 100 --partitions 1 --acks 1

Prints one JSON object per run on stdout; progress on stderr.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def wait_listening(port, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("broker did not start listening")


def run_phase(loadgen, args):
    result = subprocess.run([loadgen, *args, "--json"], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"loadgen {args[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fjord", help="fjord binary")
    parser.add_argument("--broker-command", help="a different broker: command with {port} and {data}")
    parser.add_argument("--label", default=None)
    parser.add_argument("--loadgen", required=True)
    parser.add_argument("--backend", default="memory")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--acks", type=int, default=1)
    parser.add_argument("--compression", default="none")
    parser.add_argument("--skip-consume", action="store_true")
    parser.add_argument("--extra", action="append", default=[], help="extra fjord argument (repeatable)")
    args = parser.parse_args()

    port = free_port()
    data = tempfile.mkdtemp(prefix="fjord-bench-", dir=os.environ.get("FJORD_BENCH_DIR"))
    if args.broker_command:
        command = args.broker_command.format(port=port, data=data).split()
    else:
        command = [args.fjord, "--backend", args.backend, "--data-dir", data, "--listen", f"127.0.0.1:{port}",
                   "--default-partitions", str(args.partitions), "--log-level", "warning", *args.extra]
    log = open(os.path.join(data, "broker.log"), "wb")
    broker = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, broker)
        topic = f"bench-{args.size}-{args.partitions}"
        common = ["--bootstrap", f"127.0.0.1:{port}", "--topic", topic, "--partitions", str(args.partitions)]
        # Create the topic (auto-creation with --default-partitions) outside the measurement.
        run_phase(args.loadgen, ["produce", *common, "--messages", "1", "--size", "8", "--acks", "1"])

        cpu0 = cpu_seconds(broker.pid)
        produce = run_phase(args.loadgen, ["produce", *common, "--messages", str(args.messages), "--size", str(args.size),
                                           "--acks", str(args.acks), "--compression", args.compression])
        cpu1 = cpu_seconds(broker.pid)
        result = {
            "broker": args.label or (f"fjord/{args.backend}" if not args.broker_command else "custom"),
            "messages": args.messages, "size": args.size, "partitions": args.partitions, "acks": args.acks,
            "compression": args.compression,
            "produce_msgs_per_s": produce["msgs_per_s"], "produce_mb_per_s": produce["mb_per_s"],
            "produce_p50_ms": produce["latency_p50_ms"], "produce_p99_ms": produce["latency_p99_ms"],
            "produce_p999_ms": produce["latency_p999_ms"],
            "produce_seconds": produce["seconds"], "produce_client_cpu_s": produce["client_cpu_s"],
            "produce_broker_cpu_s": round(cpu1 - cpu0, 3),
            "produce_broker_cpu_s_per_gb": round((cpu1 - cpu0) / (args.messages * args.size / 1e9), 3),
            "produce_failed": produce["failed"],
        }
        if not args.skip_consume:
            consume = run_phase(args.loadgen, ["consume", *common, "--messages", str(args.messages + 1)])
            cpu2 = cpu_seconds(broker.pid)
            result.update({
                "consume_msgs_per_s": consume["msgs_per_s"], "consume_mb_per_s": consume["mb_per_s"],
                "consume_seconds": consume["seconds"], "consume_client_cpu_s": consume["client_cpu_s"],
                "consume_broker_cpu_s": round(cpu2 - cpu1, 3),
                "consume_broker_cpu_s_per_gb": round((cpu2 - cpu1) / (args.messages * args.size / 1e9), 3),
            })
        print(json.dumps(result), flush=True)
    finally:
        broker.send_signal(signal.SIGTERM)
        try:
            broker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            broker.kill()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
