#!/usr/bin/env python3
"""The physical-limit row of the uring design (Benchmarks/bench.py step "limit").

fjord-wal-limit (Benchmarks/wal_limit/fjord_wal_limit.c) does only the ideal shared-WAL group
commit with io_uring — N partitions × 1 KiB frames, one flush per round — in every write mode
(buffered or O_DIRECT, fdatasync or RWF_DSYNC, 1 or 2 rounds in flight). Interleaved with it, in
the same rounds, fjord-storage-bench measures the host: uring durable 1 KiB × 64 (reported as a
fraction of the best buffered and of the best O_DIRECT limit) and memory not durable 1 KiB × 64
(appends/s through the host, the protocol-free cost of StorageHost itself).
"""

import json
import subprocess
import sys

import broker_bench

MODES = [{"direct": direct, "dsync": dsync, "pipeline": pipeline}
         for direct in (False, True) for dsync in (False, True) for pipeline in (1, 2)]
LIMIT_KEYS = ("frames_per_s", "mb_per_s", "disk_mb_per_s", "rounds_per_s", "bytes_per_round", "round_p50_us",
              "round_p99_us", "cpu_user_s", "cpu_sys_s", "cpu_s_per_gb")
HOST_KEYS = ("megabytesPerSecond", "batchesPerSecond", "p50Us", "p99Us")


def log(message):
    print(message, file=sys.stderr, flush=True)


def mode_name(mode):
    return (f"{'direct' if mode['direct'] else 'buffered'}+{'dsync' if mode['dsync'] else 'fdatasync'}"
            f", {mode['pipeline']} in flight")


def run_limit_once(binary, directory, mode, partitions, seconds, file_bytes):
    args = [binary, "--dir", directory, "--partitions", str(partitions), "--frame-bytes", "1024",
            "--duration", str(seconds), "--pipeline", str(mode["pipeline"]), "--file-bytes", str(file_bytes)]
    if mode["direct"]:
        args.append("--direct")
    if mode["dsync"]:
        args.append("--dsync")
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=seconds * 10 + 120)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"fjord-wal-limit did not finish: {' '.join(args)}") from None
    if out.returncode != 0:
        raise RuntimeError(f"fjord-wal-limit failed: {out.stderr.strip()}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["name"] = mode_name(mode)
    return row


def run_host_once(storage_bench, directory, backend, durable, partitions, seconds):
    args = [storage_bench, "--backend", backend, "--data-dir", directory, "--batch-bytes", "1024", "--partitions",
            str(partitions), "--duration", str(seconds), "--no-read", "--no-recovery", "--json"]
    if durable:
        args.append("--durable")
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=max(120, seconds * 20))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"fjord-storage-bench did not finish: {' '.join(args)}") from None
    if out.returncode != 0:
        raise RuntimeError(f"fjord-storage-bench failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_limit(binary, storage_bench, directory, *, partitions=64, seconds=2, rounds=3, file_bytes=256 << 20,
              modes=MODES):
    """Every mode and both host rows in each of `rounds` interleaved rounds; medians per mode."""
    runs, host_runs = [], []
    for round_index in range(rounds):
        for mode in modes:
            row = run_limit_once(binary, directory, mode, partitions, seconds, file_bytes)
            row["round"] = round_index + 1
            runs.append(row)
            log(f"limit: {row['name']} × {partitions}: {row['mb_per_s']:.0f} MB/s, {row['rounds_per_s']:.0f} "
                f"rounds/s of {row['bytes_per_round'] / 1024:.0f} KiB, CPU {row['cpu_s_per_gb']:.2f} s/GB")
        for backend, durable in (("uring", True), ("memory", False)):
            row = run_host_once(storage_bench, directory, backend, durable, partitions, seconds)
            row["round"] = round_index + 1
            host_runs.append(row)
            log(f"limit: host {backend} durable={durable} × {partitions}: {row['megabytesPerSecond']:.0f} MB/s, "
                f"{row['batchesPerSecond']:,.0f} appends/s")
    medians = broker_bench.median_by(runs, ("name", "write_mode", "sync_mode", "pipeline", "partitions"), LIMIT_KEYS)
    host = broker_bench.median_by(host_runs, ("backend", "durable", "partitions", "batchBytes"), HOST_KEYS)
    uring = next(r for r in host if r["backend"] == "uring")
    best, fraction = {}, {}
    for write_mode in ("buffered", "direct"):
        mine = [m for m in medians if m["write_mode"] == write_mode]
        if mine:
            best[write_mode] = max(mine, key=lambda m: m["mb_per_s"])
            limit = best[write_mode]["mb_per_s"]
            fraction[write_mode] = round(uring["megabytesPerSecond"] / limit, 3) if limit else None
    return {"partitions": partitions, "seconds": seconds, "rounds": rounds, "file_bytes": file_bytes, "runs": runs,
            "host_runs": host_runs, "modes": medians, "host": host, "best": best, "fraction": fraction}
