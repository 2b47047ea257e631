#!/usr/bin/env python3
"""End-to-end broker benchmark: starts a broker (fjord on a backend, or any command such as Tansu)
on 127.0.0.1, drives it with fjord-loadgen (librdkafka) and reports throughput, produce latency,
end-to-end latency, consume throughput, the client's CPU seconds and the broker's CPU seconds per
GB moved (utime + stime from /proc/PID/stat, sampled around each phase).

One configuration per call:

    python3 Benchmarks/broker_bench.py --fjord .build/release/fjord --loadgen .build/fjord-loadgen \\
        --backend uring --producers 1 --partitions 64 --size 1024 --acks -1 --messages 400000

    # fixed rate for latency (the consumer runs alongside, for end-to-end latency):
    ... --acks -1 --rate 100000 --duration 10

    # another broker ({port} and {data} are filled in):
    ... --broker-command "tansu broker --listener-url tcp://127.0.0.1:{port} \\
        --advertised-listener-url tcp://127.0.0.1:{port} --storage-engine memory://tansu/" --label tansu

Prints one JSON object on stdout; the load generator's progress goes to stderr once a second.
Benchmarks/bench.py runs the whole comparison through run_configuration().
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
    """utime + stime of a process and its threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Broker:
    """A broker process on 127.0.0.1 with its own data directory, stopped by its PID."""

    def __init__(self, command, data, port, label):
        self.command, self.data, self.port, self.label = command, data, port, label
        self.log = open(os.path.join(data, "broker.log"), "wb")
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{label} exited with {self.proc.returncode} at startup:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{label} did not listen within 60 s")

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def log_tail(self):
        with open(os.path.join(self.data, "broker.log"), errors="replace") as f:
            return "".join(f.readlines()[-20:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.log.close()


def start_broker(fjord=None, backend="memory", broker_command=None, label=None, data_root=None, extra=()):
    port = free_port()
    data = tempfile.mkdtemp(prefix="fjord-bench-", dir=data_root)
    if broker_command:
        command = broker_command.format(port=port, data=data).split()
    else:
        command = [fjord, "--backend", backend, "--data-dir", data, "--listen", f"127.0.0.1:{port}",
                   "--log-level", "warning", *extra]
    try:
        return Broker(command, data, port, label or (f"fjord/{backend}" if not broker_command else "custom"))
    except Exception:
        shutil.rmtree(data, ignore_errors=True)
        raise


def loadgen_process(loadgen, args, quiet):
    return subprocess.Popen([loadgen, *args, "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL if quiet else None, text=True)


def finish(proc, what, timeout=1800, stopped=False):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RuntimeError(f"loadgen {what} did not finish within {timeout} s")
    lines = [line for line in out.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"loadgen {what} failed with {proc.returncode} and printed no result")
    result = json.loads(lines[-1])
    # produce reports failed deliveries in its result; a consumer stopped on purpose reads fewer.
    if proc.returncode != 0 and what != "produce" and not stopped:
        raise RuntimeError(f"loadgen {what} failed with {proc.returncode}: {result}")
    return result


def run_configuration(broker, loadgen, *, topic, partitions=64, size=1024, acks=1, compression="none",
                      producers=1, messages=400_000, duration=None, rate=None, consume=True, quiet=False):
    """One measured run against a running broker: creates the topic, produces (producers in parallel,
    each its share of messages or for duration seconds, at rate/producers msgs/s if rate is set),
    then consumes everything. With rate set, the consumer runs alongside the producers, so its
    latencies are end-to-end (send → consumed); otherwise it reads after the produce phase."""
    common = ["--bootstrap", broker.bootstrap, "--topic", topic, "--partitions", str(partitions)]
    create = subprocess.run([loadgen, "create", *common], capture_output=True, text=True, timeout=120)
    if create.returncode != 0:
        raise RuntimeError(f"creating {topic} failed: {create.stderr.strip()}")

    produce_args = ["produce", *common, "--size", str(size), "--acks", str(acks), "--compression", compression]
    if duration:
        produce_args += ["--duration-s", str(duration), "--messages", "1"]
    else:
        produce_args += ["--messages", str(max(messages // producers, 1))]
    if rate:
        produce_args += ["--rate", str(rate / producers)]

    alongside = None
    if consume and rate:
        # Reads what the producers deliver, as they deliver it; stopped once they are done.
        alongside = loadgen_process(loadgen, ["consume", *common, "--messages", str(1 << 60)], quiet=True)
        time.sleep(1.0)  # joined and fetching before the first message is sent

    cpu0, t0 = broker.cpu(), time.monotonic()
    procs = [loadgen_process(loadgen, produce_args, quiet or i > 0) for i in range(producers)]
    results = [finish(proc, "produce") for proc in procs]
    cpu1, t1 = broker.cpu(), time.monotonic()
    delivered = sum(r["messages"] for r in results)
    failed = sum(r["failed"] for r in results)
    wall = t1 - t0
    produced_gb = delivered * size / 1e9
    result = {
        "broker": broker.label, "partitions": partitions, "size": size, "acks": acks, "compression": compression,
        "producers": producers, "rate_target": rate, "messages": delivered, "failed": failed,
        "first_error": next((r["first_error"] for r in results if r["first_error"]), ""),
        "librdkafka": results[0].get("librdkafka", ""),
        "produce_seconds": round(wall, 3),
        "produce_msgs_per_s": round(delivered / wall),
        "produce_mb_per_s": round(delivered * size / 1e6 / wall, 2),
        # Each producer measures its own latencies; the slowest producer's percentile is reported.
        "produce_p50_ms": max(r["latency_p50_ms"] for r in results),
        "produce_p99_ms": max(r["latency_p99_ms"] for r in results),
        "produce_p999_ms": max(r["latency_p999_ms"] for r in results),
        "produce_client_cpu_s": round(sum(r["client_cpu_s"] for r in results), 3),
        "produce_broker_cpu_s": round(cpu1 - cpu0, 3),
        "produce_broker_cpu_s_per_gb": round((cpu1 - cpu0) / produced_gb, 3) if produced_gb else None,
    }
    if not consume:
        return result
    if alongside is not None:
        time.sleep(2.0)  # the last deliveries reach the consumer
        alongside.send_signal(signal.SIGINT)
        consumed = finish(alongside, "consume", timeout=60, stopped=True)
        result.update({"e2e_p50_ms": consumed["e2e_p50_ms"], "e2e_p99_ms": consumed["e2e_p99_ms"],
                       "e2e_messages": consumed["messages"]})
        return result
    # Each producer's warm-up wrote one message per partition before the measured ones.
    everything = delivered + producers * partitions
    consumed = finish(loadgen_process(loadgen, ["consume", *common, "--messages", str(everything)], quiet), "consume")
    cpu2 = broker.cpu()
    result.update({
        "consume_msgs_per_s": consumed["msgs_per_s"], "consume_mb_per_s": consumed["mb_per_s"],
        "consume_seconds": consumed["seconds"], "consume_client_cpu_s": consumed["client_cpu_s"],
        "consume_broker_cpu_s": round(cpu2 - cpu1, 3),
        "consume_broker_cpu_s_per_gb": round((cpu2 - cpu1) / produced_gb, 3) if produced_gb else None,
        "consumed": consumed["messages"],
    })
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fjord", help="fjord binary")
    parser.add_argument("--backend", default="memory")
    parser.add_argument("--broker-command", help="another broker: a command with {port} and {data}")
    parser.add_argument("--label")
    parser.add_argument("--loadgen", required=True)
    parser.add_argument("--producers", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=64)
    parser.add_argument("--size", type=int, default=1024, help="message value bytes")
    parser.add_argument("--acks", type=int, default=1, choices=(-1, 0, 1))
    parser.add_argument("--compression", default="none", choices=("none", "gzip", "snappy", "lz4", "zstd"))
    parser.add_argument("--messages", type=int, default=400_000)
    parser.add_argument("--duration", type=float, help="produce for this many seconds instead of --messages")
    parser.add_argument("--rate", type=float, help="total messages/s (all producers); consumer runs alongside")
    parser.add_argument("--skip-consume", action="store_true")
    parser.add_argument("--extra", action="append", default=[], help="extra fjord argument (repeatable)")
    args = parser.parse_args()
    if not args.fjord and not args.broker_command:
        parser.error("--fjord or --broker-command")

    broker = start_broker(args.fjord, args.backend, args.broker_command, args.label,
                          os.environ.get("FJORD_BENCH_DIR"), args.extra)
    try:
        result = run_configuration(
            broker, args.loadgen, topic=f"bench-{args.size}-{args.partitions}", partitions=args.partitions,
            size=args.size, acks=args.acks, compression=args.compression, producers=args.producers,
            messages=args.messages, duration=args.duration, rate=args.rate, consume=not args.skip_consume)
        print(json.dumps(result), flush=True)
    finally:
        broker.stop()
        shutil.rmtree(broker.data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
