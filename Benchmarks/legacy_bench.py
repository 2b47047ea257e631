#!/usr/bin/env python3
"""Up- and down-conversion cost (issue 17): kafka-python with a pinned api_version against a fresh
fjord. Produce v2 (magic 1 message sets, up-converted) vs the client's newest Produce, and Fetch v2
(down-converted to magic 1) vs its newest Fetch, 1 KiB values: client throughput and the broker's
CPU seconds per GB moved (utime + stime of its process). The client is the bottleneck for both
generations; compare the two rows of a column, not the absolute figures.

    .build/test-venv/bin/python Benchmarks/legacy_bench.py --binary .build/release/fjord [--mib 256] [--backend file]
"""

import argparse
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

OLD = (0, 10, 0)  # Produce v2, Fetch v2


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def produce(bootstrap, topic, count, value, api_version):
    # Idempotence (kafka-python's default with the newest versions) does not exist before magic 2.
    config = {"api_version": api_version} if api_version else {"enable_idempotence": False}
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5, batch_size=256 << 10, **config)
    for _ in range(count):
        producer.send(topic, value=value, partition=0)
    producer.flush(120)
    producer.close()


def consume(bootstrap, topic, count, api_version):
    config = {"api_version": api_version} if api_version else {}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             fetch_max_bytes=8 << 20, max_partition_fetch_bytes=8 << 20, **config)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek(partition, 0)
    seen = 0
    while seen < count:
        for records in consumer.poll(timeout_ms=1000, max_records=10_000).values():
            seen += len(records)
    consumer.close()


def measure(pid, action):
    cpu, start = cpu_seconds(pid), time.monotonic()
    action()
    return time.monotonic() - start, cpu_seconds(pid) - cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=".build/release/fjord")
    parser.add_argument("--backend", default="file")
    parser.add_argument("--mib", type=int, default=256, help="MiB of 1 KiB values per run")
    args = parser.parse_args()
    count = args.mib * 1024
    value = os.urandom(512).hex().encode()  # 1 KiB, incompressible enough
    data = tempfile.mkdtemp(prefix="legacy-bench-")
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = subprocess.Popen([args.binary, "--backend", args.backend, "--data-dir", data, "--listen", bootstrap,
                               "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        gb = count * len(value) / 1e9
        print(f"{args.mib} MiB of 1 KiB values, backend {args.backend} (shared machines: figures are indicative)")
        print(f"{'run':32} {'MB/s':>8} {'broker CPU-s/GB':>16}")
        for name, api_version in (("produce v2 (up-converted)", OLD), ("produce newest", None)):
            topic = f"bench-{'old' if api_version else 'new'}"
            seconds, cpu = measure(broker.pid, lambda: produce(bootstrap, topic, count, value, api_version))
            print(f"{name:32} {gb * 1000 / seconds:8.1f} {cpu / gb:16.2f}")
        for name, api_version in (("fetch v2 (down-converted)", OLD), ("fetch newest", None)):
            seconds, cpu = measure(broker.pid, lambda: consume(bootstrap, "bench-new", count, api_version))
            print(f"{name:32} {gb * 1000 / seconds:8.1f} {cpu / gb:16.2f}")
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
