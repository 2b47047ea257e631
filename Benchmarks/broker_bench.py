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
import contextlib
import glob
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
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


def context_switches(pid):
    """{thread id: voluntary + involuntary context switches} of every thread of a process."""
    counts = {}
    for status in glob.glob(f"/proc/{pid}/task/*/status"):
        total = 0
        try:
            with open(status) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            continue  # the thread exited while we looked
        counts[int(status.split("/")[4])] = total
    return counts


class ContextSwitchCounter:
    """Context switches of a process's threads over a window. /proc/PID/task/*/status counts per
    thread, and a thread that exits (an io_uring io-wq worker idling out) takes its count with it,
    so a sampler reads every thread every `interval_s` and keeps each one's last value: at most one
    interval of an exiting thread's switches is lost."""

    def __init__(self, pid, interval_s=0.1):
        self.pid, self.interval_s = pid, interval_s
        self.baseline = context_switches(pid)
        self.last = dict(self.baseline)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while not self.stopping.wait(self.interval_s):
            self.last.update(context_switches(self.pid))

    def stop(self):
        """Switches since the counter started, summed over every thread seen."""
        self.stopping.set()
        self.thread.join()
        self.last.update(context_switches(self.pid))
        self.threads_seen = len(self.last)
        return sum(value - self.baseline.get(tid, 0) for tid, value in self.last.items())


class Broker:
    """A broker process on 127.0.0.1 with its own data directory, stopped by its PID. With a
    wrapper (valgrind, perf stat) the broker is the wrapper itself when it runs its tool in-process
    (valgrind) or the wrapper's child (perf): `pid` is whichever listens."""

    def __init__(self, command, data, port, label, start_timeout_s=60, stop_timeout_s=30, wrapped=False):
        self.command, self.data, self.port, self.label = command, data, port, label
        self.stop_timeout_s = stop_timeout_s
        self.log = open(os.path.join(data, "broker.log"), "wb")
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{label} exited with {self.proc.returncode} at startup:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    if wrapped:
                        self.pid = self._listening_pid()
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{label} did not listen within {start_timeout_s} s")

    def _listening_pid(self):
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                children = f.read().split()
        except OSError:
            children = []
        return int(children[0]) if len(children) == 1 else self.proc.pid

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def cpu(self):
        return cpu_seconds(self.pid)

    def log_tail(self):
        with open(os.path.join(self.data, "broker.log"), errors="replace") as f:
            return "".join(f.readlines()[-20:])

    def stop(self):
        """SIGTERM, then SIGKILL after stop_timeout_s; returns whether it stopped on SIGTERM."""
        clean = True
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                clean = False
                if self.pid != self.proc.pid:
                    os.kill(self.pid, signal.SIGKILL)  # the wrapper's child would outlive it
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.log.close()
        return clean


def start_broker(fjord=None, backend="memory", broker_command=None, label=None, data_root=None, extra=(),
                 wrapper=(), start_timeout_s=60, stop_timeout_s=30):
    """A broker on a free port; `wrapper` is a command prefix (e.g. valgrind with its options)."""
    port = free_port()
    data = tempfile.mkdtemp(prefix="fjord-bench-", dir=data_root)
    if broker_command:
        command = broker_command.format(port=port, data=data).split()
    else:
        command = [fjord, "--backend", backend, "--data-dir", data, "--listen", f"127.0.0.1:{port}",
                   "--log-level", "warning", *extra]
    try:
        return Broker([*wrapper, *command], data, port,
                      label or (f"fjord/{backend}" if not broker_command else "custom"), start_timeout_s, stop_timeout_s,
                      wrapped=bool(wrapper))
    except Exception:
        shutil.rmtree(data, ignore_errors=True)
        raise


@contextlib.contextmanager
def running_broker(*args, **kwargs):
    """start_broker(...) for a `with` block: stopped and its data removed at the end."""
    broker = start_broker(*args, **kwargs)
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(broker.data, ignore_errors=True)


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


def create_topic(broker, loadgen, topic, partitions, timeout_s=120, topic_configs=None):
    """Creates the topic through the admin API (with `topic_configs`, a dict); returns the loadgen
    arguments naming it."""
    common = ["--bootstrap", broker.bootstrap, "--topic", topic, "--partitions", str(partitions)]
    configs = [arg for key, value in (topic_configs or {}).items() for arg in ("--topic-config", f"{key}={value}")]
    create = subprocess.run([loadgen, "create", *common, *configs], capture_output=True, text=True, timeout=timeout_s)
    if create.returncode != 0:
        raise RuntimeError(f"creating {topic} failed: {create.stderr.strip()}")
    return common


class BarrierProducer:
    """A `fjord-loadgen produce --wait-start` process: its stdout lines are read by a thread into a
    queue, so the caller can wait for its "ready" and "done" events with a timeout."""

    def __init__(self, loadgen, args, quiet):
        self.proc = subprocess.Popen([loadgen, *args, "--wait-start", "--json"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if quiet else None, text=True)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)  # end of output

    def wait_event(self, name, deadline):
        """Waits for {"event": name}; raises when the process ends or the deadline passes first."""
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise RuntimeError(f"loadgen did not report {name} in time") from None
            if line is None:
                raise RuntimeError(f"loadgen exited with {self.proc.wait()} before {name}")
            if line.startswith("{") and json.loads(line).get("event") == name:
                return

    def start(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()

    def result(self, deadline):
        """The result line, once the process has exited."""
        last = None
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise RuntimeError("loadgen did not finish in time") from None
            if line is None:
                break
            if line.startswith("{") and "event" not in json.loads(line):
                last = json.loads(line)
        self.proc.wait(timeout=max(deadline - time.monotonic(), 1))
        if last is None:
            raise RuntimeError(f"loadgen produce failed with {self.proc.returncode} and printed no result")
        return last

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_barrier_produce(broker, loadgen, *, topic, partitions, size=1024, acks=-1, producers=1, messages=100_000,
                        linger_ms=None, max_in_flight=None, stats_interval_ms=200, timeout_s=600, quiet=True):
    """Producers that start together: each warms up (one message per partition), waits at a barrier,
    then sends `messages` (round-robin) once every producer is ready. Measured over the window from
    the barrier to the last producer's last acknowledgement: the broker's CPU and context switches
    (every thread), and over all producers msg/s from the first send to the last acknowledgement and
    the Produce requests the messages took (librdkafka's statistics)."""
    common = create_topic(broker, loadgen, topic, partitions)
    args = ["produce", *common, "--size", str(size), "--acks", str(acks), "--messages", str(messages),
            "--stats-interval-ms", str(stats_interval_ms)]
    if linger_ms is not None:
        args += ["--linger-ms", str(linger_ms)]
    if max_in_flight is not None:
        args += ["--max-in-flight", str(max_in_flight)]
    deadline = time.monotonic() + timeout_s
    procs = [BarrierProducer(loadgen, args, quiet or i > 0) for i in range(producers)]
    try:
        for proc in procs:
            proc.wait_event("ready", deadline)
        switches = ContextSwitchCounter(broker.pid)
        cpu0 = broker.cpu()
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.wait_event("done", deadline)
        cpu1 = broker.cpu()
        switch_count = switches.stop()
        results = [proc.result(deadline) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    delivered = sum(r["messages"] for r in results)
    span_s = (max(r["last_ack_ns"] for r in results) - min(r["start_ns"] for r in results)) / 1e9
    requests = sum(r["produce_requests"] for r in results) if all(r["produce_requests"] >= 0 for r in results) else None
    gb = delivered * size / 1e9
    return {
        "broker": broker.label, "partitions": partitions, "size": size, "acks": acks, "producers": producers,
        "linger_ms": linger_ms, "max_in_flight": max_in_flight, "messages": delivered,
        "librdkafka": results[0].get("librdkafka", ""),
        "failed": sum(r["failed"] for r in results),
        "first_error": next((r["first_error"] for r in results if r["first_error"]), ""),
        "seconds": round(span_s, 3),
        "msgs_per_s": round(delivered / span_s) if span_s > 0 else None,
        "mb_per_s": round(delivered * size / 1e6 / span_s, 2) if span_s > 0 else None,
        "p50_ms": max(r["latency_p50_ms"] for r in results), "p99_ms": max(r["latency_p99_ms"] for r in results),
        "client_cpu_s": round(sum(r["client_cpu_s"] for r in results), 3),
        "broker_cpu_s": round(cpu1 - cpu0, 3),
        "broker_cpu_s_per_gb": round((cpu1 - cpu0) / gb, 3) if gb else None,
        "produce_requests": requests,
        "messages_per_request": round(delivered / requests, 1) if requests else None,
        "context_switches": switch_count, "broker_threads": switches.threads_seen,
        "switches_per_request": round(switch_count / requests, 2) if requests else None,
        "switches_per_message": round(switch_count / delivered, 4) if delivered else None,
    }


def run_configuration(broker, loadgen, *, topic, partitions=64, size=1024, acks=1, compression="none",
                      producers=1, messages=400_000, duration=None, rate=None, consume=True, quiet=False,
                      topic_configs=None):
    """One measured run against a running broker: creates the topic, produces (producers in parallel,
    each its share of messages or for duration seconds, at rate/producers msgs/s if rate is set),
    then consumes everything. With rate set, the consumer runs alongside the producers, so its
    latencies are end-to-end (send → consumed); otherwise it reads after the produce phase.
    `topic_configs` (a dict) are set when the topic is created (e.g. compression.type)."""
    common = create_topic(broker, loadgen, topic, partitions, topic_configs=topic_configs)

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
        "topic_configs": dict(topic_configs or {}), "producers": producers, "rate_target": rate, "messages": delivered, "failed": failed,
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


def median_by(runs, group, keys):
    """One row per distinct value of the `group` fields: the group's fields and the median of each
    key over its runs (None values left out; None when a key has no value)."""
    rows = {}
    for run in runs:
        rows.setdefault(tuple(run[g] for g in group), []).append(run)
    medians = []
    for values, mine in rows.items():
        row = dict(zip(group, values))
        row["runs"] = len(mine)
        for key in keys:
            present = [r[key] for r in mine if r.get(key) is not None]
            row[key] = statistics.median(present) if present else None
        medians.append(row)
    return medians


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
    parser.add_argument("--topic-config", action="append", default=[], metavar="KEY=VALUE",
                        help="a config of the benchmark topic, e.g. compression.type=lz4 (repeatable)")
    args = parser.parse_args()
    if any("=" not in config for config in args.topic_config):
        parser.error("--topic-config must be KEY=VALUE")
    if not args.fjord and not args.broker_command:
        parser.error("--fjord or --broker-command")

    broker = start_broker(args.fjord, args.backend, args.broker_command, args.label,
                          os.environ.get("FJORD_BENCH_DIR"), args.extra)
    try:
        result = run_configuration(
            broker, args.loadgen, topic=f"bench-{args.size}-{args.partitions}", partitions=args.partitions,
            size=args.size, acks=args.acks, compression=args.compression, producers=args.producers,
            messages=args.messages, duration=args.duration, rate=args.rate, consume=not args.skip_consume,
            topic_configs=dict(config.split("=", 1) for config in args.topic_config))
        print(json.dumps(result), flush=True)
    finally:
        broker.stop()
        shutil.rmtree(broker.data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
