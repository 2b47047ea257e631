#!/usr/bin/env python3
"""Many producers (Benchmarks/bench.py step "many"): the case group commit exists for.

8 fjord-loadgen processes at once (separate connections, librdkafka, linger.ms=0, 5 requests in
flight each, acks=all), round-robin over a topic of 64 or 1,000 partitions created first through
the admin API, so many small durable requests are in flight together. All producers warm up, wait
at a barrier and start together; msg/s runs from the first send to the last acknowledgement over
all of them, and the broker's CPU and context switches are taken over that window. On a 2-core
machine the producers take most of the CPU, so the broker's CPU-s/GB is the figure that shows the
host's cost. Rounds are interleaved over backends and partition counts; medians reported.
"""

import sys

import broker_bench

KEYS = ("msgs_per_s", "mb_per_s", "p50_ms", "p99_ms", "broker_cpu_s_per_gb", "client_cpu_s", "produce_requests",
        "messages_per_request", "switches_per_request")


def log(message):
    print(message, file=sys.stderr, flush=True)


def run_many(fjord, loadgen, data_root, backends, partitions_list, *, producers=8, messages=100_000, rounds=3,
             stats_interval_ms=1000):
    """stats_interval_ms: librdkafka's statistics (the request count) — each producer waits up to one
    interval before its barrier and after its last acknowledgement, outside the measured window."""
    runs = []
    for round_index in range(rounds):
        for partitions in partitions_list:
            for backend in backends:
                with broker_bench.running_broker(fjord, backend, data_root=data_root) as broker:
                    result = broker_bench.run_barrier_produce(
                        broker, loadgen, topic=f"many-{partitions}", partitions=partitions, acks=-1,
                        producers=producers, messages=messages, linger_ms=0, max_in_flight=5,
                        stats_interval_ms=stats_interval_ms, timeout_s=900)
                result["round"] = round_index + 1
                runs.append(result)
                log(f"many: {broker.label} {producers} producers × {partitions} partitions round {round_index + 1}: "
                    f"{result['msgs_per_s']:,} msg/s, broker {result['broker_cpu_s_per_gb']} CPU-s/GB, "
                    f"{result['messages_per_request']} msg/request"
                    + (f", {result['failed']} failed ({result['first_error']})" if result["failed"] else ""))
    return runs, broker_bench.median_by(runs, ("broker", "partitions", "producers"), KEYS)
