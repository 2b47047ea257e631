#!/usr/bin/env python3
"""Transactions benchmark (issue 14): on each backend, a transactional producer (1 KiB, 64
partitions, acks=all) committing every 100 ms and every 1,000 messages next to the same producer
without transactions; read_committed vs read_uncommitted consume throughput over what the
transactional producer wrote; and the broker's recovery time with 1,000 open transactions (each
with a batch in one of 64 partitions) after kill -9.

    python3 Benchmarks/txn_bench.py --fjord .build/release/fjord --loadgen .build/fjord-loadgen \\
        --backends uring,file --messages 200000 --rounds 3

Prints one JSON object per measurement and a Markdown table at the end (medians of the rounds).
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "e2e"))

from broker_bench import Broker, create_topic, finish, loadgen_process, start_broker  # noqa: E402
import kafka_raw  # noqa: E402

PRODUCE_MODES = {
    "plain": [],
    "txn-100ms": ["--commit-every-ms", "100"],
    "txn-1000msg": ["--commit-every-messages", "1000"],
}


def produce(broker, loadgen, topic, mode, messages, partitions):
    args = ["produce", "--bootstrap", broker.bootstrap, "--topic", topic, "--partitions", str(partitions),
            "--size", "1024", "--acks", "-1", "--messages", str(messages), "--linger-ms", "5"]
    if mode != "plain":
        args += ["--transactional-id", f"bench-{topic}", *PRODUCE_MODES[mode]]
    return finish(loadgen_process(loadgen, args, quiet=True), f"produce {mode}")


def consume(broker, loadgen, topic, isolation, messages, partitions):
    args = ["consume", "--bootstrap", broker.bootstrap, "--topic", topic, "--partitions", str(partitions),
            "--messages", str(messages), "--isolation", isolation]
    return finish(loadgen_process(loadgen, args, quiet=True), f"consume {isolation}")


def open_transactions(bootstrap, topic, count, partitions):
    """`count` transactional ids, each with an open transaction holding one batch (raw protocol:
    InitProducerId v1, AddPartitionsToTxn v1, Produce v3 with the transactional attribute)."""
    with kafka_raw.Connection(bootstrap) as connection:
        for n in range(count):
            transactional_id = f"open-{n}"
            r = connection.request(22, 1, kafka_raw.string(transactional_id) + kafka_raw.i32(900_000))
            r.i32()
            error, producer_id, epoch = r.i16(), r.i64(), r.i16()
            assert error == 0, f"InitProducerId: {error}"
            partition = n % partitions
            body = (kafka_raw.string(transactional_id) + kafka_raw.i64(producer_id) + kafka_raw.i16(epoch)
                    + kafka_raw.array([kafka_raw.string(topic) + kafka_raw.array([kafka_raw.i32(partition)])]))
            r = connection.request(24, 1, body)
            r.i32(); r.i32(); r.string(); r.i32(); r.i32()
            assert r.i16() == 0, "AddPartitionsToTxn failed"
            batch = kafka_raw.record_batch([b"x" * 1024], producer_id=producer_id, producer_epoch=epoch,
                                           base_sequence=0, attributes=0x10)
            records = kafka_raw.i32(len(batch)) + batch
            body = (kafka_raw.string(transactional_id) + kafka_raw.i16(-1) + kafka_raw.i32(30000)
                    + kafka_raw.array([kafka_raw.string(topic) + kafka_raw.array([kafka_raw.i32(partition) + records])]))
            r = connection.request(0, 3, body)
            r.i32(); r.string(); r.i32(); r.i32()
            assert r.i16() == 0, "transactional produce failed"


def recovery(fjord, backend, partitions, count, data_root):
    """kill -9 with `count` open transactions, then the time from exec to listening, and the
    coordinator's own figure from its log."""
    broker = start_broker(fjord, backend, data_root=data_root, extra=["--log-level", "info"])
    try:
        topic = "recovery"
        kafka_raw_create(broker.bootstrap, topic, partitions)
        open_transactions(broker.bootstrap, topic, count, partitions)
        os.kill(broker.pid, signal.SIGKILL)
        broker.proc.wait(timeout=30)
        broker.log.close()
        started = time.monotonic()
        command = [fjord, "--backend", backend, "--data-dir", broker.data, "--listen", f"127.0.0.1:{broker.port}",
                   "--log-level", "info"]
        again = Broker(command, broker.data, broker.port, f"fjord/{backend}")
        listening_s = time.monotonic() - started
        with open(os.path.join(broker.data, "broker.log"), errors="replace") as f:
            found = re.findall(r"ms=(\d+) ongoing=(\d+)", f.read())
        again.stop()
        coordinator_ms, ongoing = (int(found[-1][0]), int(found[-1][1])) if found else (-1, -1)
        return {"backend": backend, "open_transactions": count, "restart_to_listening_s": round(listening_s, 3),
                "transaction_recovery_ms": coordinator_ms, "ongoing_after_restart": ongoing}
    finally:
        if broker.proc.poll() is None:
            broker.stop()
        shutil.rmtree(broker.data, ignore_errors=True)


def kafka_raw_create(bootstrap, topic, partitions):
    """CreateTopics v0 through the raw client (no librdkafka instance needed)."""
    body = kafka_raw.array([kafka_raw.string(topic) + kafka_raw.i32(partitions) + kafka_raw.i16(1)
                            + kafka_raw.array([]) + kafka_raw.array([])]) + kafka_raw.i32(30000)
    with kafka_raw.Connection(bootstrap) as connection:
        r = connection.request(19, 0, body)
        r.i32(); r.string()
        assert r.i16() in (0, 36), "CreateTopics failed"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fjord", default=".build/release/fjord")
    parser.add_argument("--loadgen", default=".build/fjord-loadgen")
    parser.add_argument("--backends", default="uring,file")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--open-transactions", type=int, default=1000)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    rows = []
    for backend in args.backends.split(","):
        for round_index in range(args.rounds):
            broker = start_broker(args.fjord, backend, data_root=args.data_root)
            try:
                for mode in PRODUCE_MODES:
                    topic = f"bench-{mode}-{round_index}"
                    create_topic(broker, args.loadgen, topic, args.partitions)
                    result = produce(broker, args.loadgen, topic, mode, args.messages, args.partitions)
                    row = {"backend": backend, "round": round_index, "what": f"produce {mode}",
                           "msgs_per_s": result["msgs_per_s"], "commits": result.get("commits", 0)}
                    if mode == "txn-1000msg":
                        # Warm-up (one per partition) and measured messages; markers are not delivered.
                        total = args.messages + args.partitions
                        for isolation in ("read_uncommitted", "read_committed"):
                            consumed = consume(broker, args.loadgen, topic, isolation, total, args.partitions)
                            rows.append({"backend": backend, "round": round_index, "what": f"consume {isolation}",
                                         "msgs_per_s": consumed["msgs_per_s"]})
                            print(json.dumps(rows[-1]), flush=True)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                broker.stop()
                shutil.rmtree(broker.data, ignore_errors=True)
        rows.append({"backend": backend, "what": "recovery",
                     **recovery(args.fjord, backend, args.partitions, args.open_transactions, args.data_root)})
        print(json.dumps(rows[-1]), flush=True)

    print("\n| Backend | measurement | msg/s (median of rounds) |\n|---|---|---|")
    for backend in args.backends.split(","):
        for what in [f"produce {m}" for m in PRODUCE_MODES] + ["consume read_uncommitted", "consume read_committed"]:
            values = [r["msgs_per_s"] for r in rows if r["backend"] == backend and r["what"] == what]
            if values:
                print(f"| {backend} | {what} | {statistics.median(values):,.0f} |")
    for row in rows:
        if row["what"] == "recovery":
            print(f"\nrecovery, {row['backend']}: {row['open_transactions']} open transactions, restart to listening "
                  f"{row['restart_to_listening_s']} s, transaction recovery {row['transaction_recovery_ms']} ms, "
                  f"{row['ongoing_after_restart']} still open")


if __name__ == "__main__":
    main()
