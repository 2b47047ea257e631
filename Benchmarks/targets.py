#!/usr/bin/env python3
"""The targets the benchmarks are judged by, each computed from one run's figures: met, missed, or
not measured (a step that did not run). Ratios are within one run; figures are the medians of the
step's rounds."""


def _find(rows, **fields):
    return next((r for r in rows or [] if all(r.get(k) == v for k, v in fields.items())), None)


def storage_row(rows, backend, batch, partitions, durable):
    return _find(rows, backend=backend, batchBytes=batch, partitions=partitions, durable=durable)


def benchmark_targets(storage, medians, latency, specs):
    """The benchmark issue's targets, each met or missed, from this run's figures."""
    def m(label, acks, key):
        return medians.get((label, acks), {}).get(key)

    found = []
    labels = {spec["label"] for spec in specs}
    if {"fjord/memory", "tansu/memory"} <= labels:
        ratio = m("fjord/memory", 1, "produce_msgs_per_s") / m("tansu/memory", 1, "produce_msgs_per_s")
        cpu = m("fjord/memory", 1, "produce_broker_cpu_s_per_gb") / m("tansu/memory", 1, "produce_broker_cpu_s_per_gb")
        found.append(("memory produce ≥ 1.25× Tansu's throughput (1 KiB, acks=1)", f"{ratio:.2f}×", ratio >= 1.25))
        found.append(("memory broker CPU-s/GB ≤ 0.5× Tansu's", f"{cpu:.2f}×", cpu <= 0.5))
    if {"fjord/memory", "fjord/uring"} <= labels:
        ratio = m("fjord/uring", -1, "produce_msgs_per_s") / m("fjord/memory", -1, "produce_msgs_per_s")
        found.append(("uring acks=all ≥ 0.8× memory's throughput", f"{ratio:.2f}×", ratio >= 0.8))
    if {"fjord/file", "fjord/uring"} <= labels:
        ratio = m("fjord/uring", -1, "produce_msgs_per_s") / m("fjord/file", -1, "produce_msgs_per_s")
        found.append(("uring acks=all ≥ 3× file's throughput", f"{ratio:.2f}×", ratio >= 3))
    uring_latency = next((r for r in latency if r["broker"] == "fjord/uring"), None)
    if uring_latency:
        p99 = uring_latency["produce_p99_ms"]
        found.append((f"uring acks=all produce p99 ≤ 5 ms at half max rate ({uring_latency['rate_target']:,.0f} msg/s)",
                      f"{p99:.1f} ms", p99 <= 5))
    row = storage_row(storage, "uring", 1024, 64, True)
    if row:
        found.append(("backend level: uring durable 1 KiB × 64 partitions ≥ 500 MB/s",
                      f"{row['megabytesPerSecond']:.0f} MB/s", row["megabytesPerSecond"] >= 500))
        file_row = storage_row(storage, "file", 1024, 64, True)
        if file_row:
            ratio = row["megabytesPerSecond"] / file_row["megabytesPerSecond"]
            found.append(("backend level: uring ≥ 5× file (durable 1 KiB × 64)", f"{ratio:.1f}×", ratio >= 5))
    return found


class _Targets:
    """Collects (target, this run's figure, met: True/False, or None when not measured)."""

    def __init__(self):
        self.rows = []

    def at_least(self, name, value, bound, unit):
        self._add(name, value, unit, None if value is None else value >= bound)

    def at_most(self, name, value, bound, unit):
        self._add(name, value, unit, None if value is None else value <= bound)

    def _add(self, name, value, unit, met):
        if value is None:
            text = "not measured"
        elif unit == "×":
            text = f"{value:.2f}×"
        elif unit == "/s":
            text = f"{value:,.0f}/s"
        else:
            text = f"{value:,.2f} {unit}".rstrip()
        self.rows.append((name, text, met))


def _ratio(a, b):
    return a / b if a is not None and b else None


def issue12_targets(report):
    """Issue 12's targets ("the produce fast path"), from whatever steps this report holds."""
    t = _Targets()
    limit = report.get("limit") or {}
    host_memory = _find(limit.get("host"), backend="memory", durable=False)
    if host_memory is None:  # the storage matrix's single run when the limit step did not run
        row = storage_row(report.get("storage"), "memory", 1024, 64, False)
        host_memory = row and {"batchesPerSecond": row["batchesPerSecond"]}
    partitions = limit.get("partitions", 64)
    t.at_least(f"ABI: memory 1 KiB appends/s through the host (× {partitions}, not durable) ≥ 1.5 M",
               host_memory and host_memory["batchesPerSecond"], 1.5e6, "/s")
    fraction = limit.get("fraction") or {}
    best = limit.get("best") or {}
    for write_mode, label in (("buffered", "buffered"), ("direct", "O_DIRECT")):
        mode = f" ({best[write_mode]['name']})" if write_mode in best else ""
        t.at_least(f"ABI: uring durable 1 KiB × {partitions} ≥ 0.8× the best {label} C limit row{mode}",
                   fraction.get(write_mode), 0.8, "×")

    medians = {(r["broker"], r["acks"]): r for r in report.get("medians") or []}

    def e2e(broker, acks, key):
        return medians.get((broker, acks), {}).get(key)

    t.at_most("end to end, 1 KiB × 64: broker CPU-s/GB, memory acks=1 ≤ 0.8",
              e2e("fjord/memory", 1, "produce_broker_cpu_s_per_gb"), 0.8, "CPU-s/GB")
    t.at_most("end to end, 1 KiB × 64: broker CPU-s/GB, memory acks=all ≤ 0.8",
              e2e("fjord/memory", -1, "produce_broker_cpu_s_per_gb"), 0.8, "CPU-s/GB")
    t.at_most("end to end, 1 KiB × 64: broker CPU-s/GB, uring acks=all ≤ 1.0",
              e2e("fjord/uring", -1, "produce_broker_cpu_s_per_gb"), 1.0, "CPU-s/GB")
    t.at_least("end to end: uring acks=all ≥ 0.95× memory acks=all (msg/s)",
               _ratio(e2e("fjord/uring", -1, "produce_msgs_per_s"), e2e("fjord/memory", -1, "produce_msgs_per_s")),
               0.95, "×")

    many = {(r["broker"], r["partitions"]): r for r in report.get("many") or []}

    def mp(broker, partitions, key):
        return many.get((broker, partitions), {}).get(key)

    t.at_least("many producers, 64 partitions: uring ≥ 1.5× file (msg/s)",
               _ratio(mp("fjord/uring", 64, "msgs_per_s"), mp("fjord/file", 64, "msgs_per_s")), 1.5, "×")
    t.at_least("many producers, 1,000 partitions: uring ≥ 2× file (msg/s)",
               _ratio(mp("fjord/uring", 1000, "msgs_per_s"), mp("fjord/file", 1000, "msgs_per_s")), 2, "×")
    t.at_least("many producers, 1,000 partitions: uring ≥ 0.9× memory (msg/s)",
               _ratio(mp("fjord/uring", 1000, "msgs_per_s"), mp("fjord/memory", 1000, "msgs_per_s")), 0.9, "×")
    t.at_most("many producers, 1,000 partitions: broker CPU-s/GB on uring ≤ 0.8",
              mp("fjord/uring", 1000, "broker_cpu_s_per_gb"), 0.8, "CPU-s/GB")
    t.at_most("many producers, 64 partitions: broker CPU-s/GB on memory ≤ 0.6",
              mp("fjord/memory", 64, "broker_cpu_s_per_gb"), 0.6, "CPU-s/GB")
    t.at_most("many producers, 64 partitions: broker CPU-s/GB on uring ≤ 0.8",
              mp("fjord/uring", 64, "broker_cpu_s_per_gb"), 0.8, "CPU-s/GB")

    latency = {r["broker"]: r for r in report.get("latency") or []}
    for broker, bound in (("fjord/memory", 5), ("fjord/uring", 10)):
        row = latency.get(broker)
        rate = f" ({row['rate_target']:,.0f} msg/s)" if row else ""
        t.at_most(f"produce p99 at half of max rate, acks=all, {broker.split('/')[1]}{rate} ≤ {bound} ms",
                  row and row["produce_p99_ms"], bound, "ms")

    switches = {(r["broker"], r["acks"], r["partitions"]): r for r in report.get("switches") or []}
    at_64 = switches.get(("fjord/uring", -1, 64), {}).get("switches_per_request")
    at_1 = switches.get(("fjord/uring", -1, 1), {}).get("switches_per_request")
    t.at_most("context switches per produce request, uring, 64 partitions ≤ 2", at_64, 2, "")
    # "The same at 1 and 64 partitions": the larger within 1.2× the smaller.
    spread = max(at_1, at_64) / min(at_1, at_64) if at_1 and at_64 else None
    t.at_most("context switches per produce request, uring: the same at 1 and 64 partitions (larger/smaller ≤ 1.2)",
              spread, 1.2, "×")

    t.at_least("Fjord memory ≥ 3× Tansu (1 KiB, acks=1, msg/s)",
               _ratio(e2e("fjord/memory", 1, "produce_msgs_per_s"), e2e("tansu/memory", 1, "produce_msgs_per_s")),
               3, "×")
    return t.rows
