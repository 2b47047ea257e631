#!/usr/bin/env python3
"""What one produced message costs the broker, in counts that do not drift with a noisy neighbour
(Benchmarks/bench.py steps "switches" and "instructions"):

- context switches per Produce request: the broker's threads' voluntary + involuntary switches
  (/proc/PID/task/*/status, sampled so exiting threads are not lost) over a produce run, divided by
  the Produce requests the client sent for it (librdkafka's statistics, `brokers.*.req.Produce`:
  fjord exposes no request counter of its own);
- instructions per produced message: the broker's whole run under `perf stat -e instructions`
  where this machine has hardware counters, else under `valgrind --tool=callgrind` (user-space
  instructions only; the kernel's work, e.g. copying into the page cache, is not counted), minus a
  baseline run that does everything but the measured messages (start-up, topic creation, the
  producer's warm-up, shutdown), divided by the messages;
- instructions per append through the storage ABI (fjord-storage-bench, no network), the same way:
  two runs of different lengths, the difference divided by the difference in appends.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import broker_bench

SWITCH_KEYS = ("msgs_per_s", "mb_per_s", "broker_cpu_s_per_gb", "produce_requests", "messages_per_request",
               "context_switches", "switches_per_request", "switches_per_message")


def log(message):
    print(message, file=sys.stderr, flush=True)


# MARK: - Context switches


def run_switches(fjord, loadgen, data_root, configs, partitions_list, messages, rounds):
    """configs: (backend, acks) pairs. One producer with fjord-loadgen's defaults (linger.ms=5), the
    load of the end-to-end table; `rounds` interleaved rounds, a fresh broker each run."""
    runs = []
    for round_index in range(rounds):
        for backend, acks in configs:
            for partitions in partitions_list:
                with broker_bench.running_broker(fjord, backend, data_root=data_root) as broker:
                    result = broker_bench.run_barrier_produce(
                        broker, loadgen, topic=f"switches-{partitions}", partitions=partitions, acks=acks,
                        messages=messages, stats_interval_ms=200)
                result["round"] = round_index + 1
                runs.append(result)
                log(f"switches: {broker.label} acks={acks} partitions={partitions}: {result['produce_requests']} "
                    f"requests ({result['messages_per_request']} msg each), {result['context_switches']} switches, "
                    f"{result['switches_per_request']} per request")
    medians = broker_bench.median_by(runs, ("broker", "acks", "partitions"), SWITCH_KEYS)
    return runs, medians


# MARK: - Instruction counters


def _perf_instructions(path):
    with open(path) as f:
        for line in f:
            fields = line.strip().split(",")
            if len(fields) > 2 and fields[2].startswith("instructions") and fields[0].isdigit():
                return int(fields[0])
    return None


def _callgrind_instructions(path):
    with open(path) as f:
        text = f.read()
    match = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def instruction_tool():
    """'perf' when `perf stat -e instructions` counts here, else 'callgrind' when valgrind is
    installed, else None."""
    if shutil.which("perf"):
        with tempfile.NamedTemporaryFile("r", suffix=".perf") as out:
            probe = subprocess.run(["perf", "stat", "-e", "instructions", "-x", ",", "-o", out.name, "true"],
                                   capture_output=True, text=True, timeout=60)
            if probe.returncode == 0 and _perf_instructions(out.name):
                return "perf"
    return "callgrind" if shutil.which("valgrind") else None


# Benchmarks/valgrind/fjord_valgrind_shim.c, built by Benchmarks/run and set by bench.py: without
# it valgrind 3.19 aborts every Swift program at libdispatch's sigsuspend and hangs the uring
# backend in io_uring_enter (see the file).
VALGRIND_SHIM = None


def counting(tool, out_path):
    """The command prefix that counts a program's instructions into out_path (`env` execs the
    counter, so the process keeps its PID)."""
    if tool == "perf":
        return ["perf", "stat", "-e", "instructions", "-x", ",", "-o", out_path, "--"]
    preload = [f"LD_PRELOAD={VALGRIND_SHIM}"] if VALGRIND_SHIM else []
    return ["env", *preload, "valgrind", "--tool=callgrind", f"--callgrind-out-file={out_path}", "--dump-line=no",
            "--dump-instr=no"]


def countable(tool, binary, directory):
    """The binary to count: for callgrind a copy without debug info (valgrind 3.19 gives up on the
    DWARF 5 that Swift 6 emits; the instructions are the same), else the binary itself."""
    if tool != "callgrind" or not shutil.which("objcopy"):
        return binary
    copy = os.path.join(directory, os.path.basename(binary))
    subprocess.run(["objcopy", "--strip-debug", binary, copy], check=True, timeout=300)
    return copy


def counted(tool, out_path):
    value = _perf_instructions(out_path) if tool == "perf" else _callgrind_instructions(out_path)
    if value is None:
        raise RuntimeError(f"no instruction count in {out_path}")
    return value


# MARK: - Instructions per message, end to end


def _broker_run(tool, fjord, loadgen, data_root, backend, acks, partitions, messages):
    """(instructions of the broker's whole life, messages delivered, Produce requests)."""
    work = tempfile.mkdtemp(prefix="instructions-", dir=data_root)
    out = os.path.join(work, f"{tool}.out")
    try:
        # Under callgrind the broker runs ~50× slower: generous start and stop bounds, still finite.
        broker = broker_bench.start_broker(fjord, backend, data_root=work, wrapper=counting(tool, out),
                                           start_timeout_s=300, stop_timeout_s=300)
        try:
            result = broker_bench.run_barrier_produce(
                broker, loadgen, topic=f"instructions-{partitions}", partitions=partitions, acks=acks,
                messages=messages, stats_interval_ms=500, timeout_s=900)
        finally:
            clean = broker.stop()
            shutil.rmtree(broker.data, ignore_errors=True)
        if not clean:
            raise RuntimeError(f"{broker.label} under {tool} did not stop on SIGTERM; no count")
        return counted(tool, out), result["messages"], result["produce_requests"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_broker_instructions(tool, fjord, loadgen, data_root, configs, partitions_list, messages):
    """configs: (backend, acks) pairs. One baseline per backend and partition count (acks=all, the
    warm-up only), then one run per config with `messages` measured messages."""
    rows = []
    for partitions in partitions_list:
        baselines = {}
        for backend, acks in configs:
            if backend not in baselines:
                baselines[backend] = _broker_run(tool, fjord, loadgen, data_root, backend, -1, partitions, 0)
                log(f"instructions: fjord/{backend} partitions={partitions} baseline {baselines[backend][0]:,}")
            base, _, _ = baselines[backend]
            total, delivered, requests = _broker_run(tool, fjord, loadgen, data_root, backend, acks, partitions,
                                                     messages)
            per_message = (total - base) / delivered if delivered else None
            rows.append({"broker": f"fjord/{backend}", "acks": acks, "partitions": partitions, "tool": tool,
                         "messages": delivered, "produce_requests": requests, "instructions": total,
                         "baseline_instructions": base,
                         "instructions_per_message": round(per_message) if per_message is not None else None,
                         "instructions_per_request": round((total - base) / requests) if requests else None})
            log(f"instructions: fjord/{backend} acks={acks} partitions={partitions}: "
                f"{rows[-1]['instructions_per_message']:,} per message")
    return rows


# MARK: - Instructions per append, through the ABI


def _storage_run(tool, storage_bench, directory, backend, partitions, appends):
    out = os.path.join(directory, f"{tool}-storage.out")
    args = [*counting(tool, out), storage_bench, "--backend", backend, "--data-dir", directory, "--partitions",
            str(partitions), "--batch-bytes", "1024", "--total-bytes", str(appends * 1024), "--no-read",
            "--no-recovery", "--json"]
    try:
        run = subprocess.run(args, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"fjord-storage-bench under {tool} did not finish: {' '.join(args)}") from None
    if run.returncode != 0:
        raise RuntimeError(f"fjord-storage-bench under {tool} failed: {run.stderr.strip()[-2000:]}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    try:
        return counted(tool, out), result["batches"]
    finally:
        os.unlink(out)


def run_abi_instructions(tool, storage_bench, data_root, backends, partitions_list, appends):
    """Instructions per 1 KiB append, not durable: (long run − short run) / (their appends' difference),
    so start-up, opening logs and shutdown cancel out."""
    rows = []
    directory = tempfile.mkdtemp(prefix="abi-instructions-", dir=data_root)
    try:
        for backend in backends:
            for partitions in partitions_list:
                short = max(appends // 10, partitions)
                short_total, short_batches = _storage_run(tool, storage_bench, directory, backend, partitions, short)
                long_total, long_batches = _storage_run(tool, storage_bench, directory, backend, partitions,
                                                        short + appends)
                per_append = (long_total - short_total) / (long_batches - short_batches)
                rows.append({"backend": backend, "partitions": partitions, "batch_bytes": 1024, "durable": False,
                             "tool": tool, "appends": long_batches - short_batches,
                             "instructions_per_append": round(per_append)})
                log(f"instructions: ABI {backend} × {partitions}: {round(per_append):,} per append")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return rows
