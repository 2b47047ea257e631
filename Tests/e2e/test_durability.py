"""Durability against the real fjord binary on the durable backends: kill -9 at the scales of the
post-mortems (DESIGN §4), kill -9 in the middle of a producing run, reads after restart, and the
operator-facing failures (data directory missing, locked, unwritable; disk full)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from conftest import BINARY, Broker, durable_backends, free_port, unique_topic
from test_confluent import consume_all, create_topic

DURABLE = durable_backends()
pytestmark = pytest.mark.skipif(not DURABLE, reason="no durable backend selected (FJORD_E2E_BACKENDS)")


def produce_acked(bootstrap, topic, count, partitions=3, value_bytes=100, extra=None):
    """Produces `count` messages round-robin over partitions with acks=all and idempotence;
    returns {partition: [(offset, value), ...]} of the acknowledged ones, in offset order."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "batch.num.messages": 10000, **(extra or {})})
    acked: dict[int, list] = {p: [] for p in range(partitions)}
    errors = []

    def report(err, msg):
        if err:
            errors.append(err)
        else:
            acked[msg.partition()].append((msg.offset(), msg.value()))

    pad = b"x" * max(0, value_bytes - 16)
    for i in range(count):
        value = b"%015d|" % i + pad
        while True:
            try:
                producer.produce(topic, value=value, partition=i % partitions, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0
    assert errors == []
    for p in acked:
        acked[p].sort()
    return acked


def watermarks(bootstrap, topic, partitions):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-watermarks"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in range(partitions)}
    finally:
        consumer.close()


@pytest.mark.parametrize("count", [10, 100, 5_000, 50_000, 500_000])
@pytest.mark.parametrize("backend", DURABLE)
def test_acked_messages_survive_kill9_exactly_once(make_broker, backend, count):
    """acks=all messages over 3 partitions, kill -9, restart: every acked message is there exactly
    once and in order, and the high watermarks equal the acked counts right after the restart."""
    broker = make_broker(backend)
    topic = unique_topic(f"kill-{count}")
    create_topic(broker.bootstrap, topic, 3)
    acked = produce_acked(broker.bootstrap, topic, count)
    assert sum(len(v) for v in acked.values()) == count

    broker.kill()
    broker.start()
    assert watermarks(broker.bootstrap, topic, 3) == {p: (0, len(acked[p])) for p in range(3)}

    got = consume_all(broker.bootstrap, topic, {p: len(acked[p]) for p in range(3)}, timeout_s=600)
    for p in range(3):
        assert [(m.offset(), m.value()) for m in got[p]] == acked[p]


PRODUCER_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from confluent_kafka import Producer
    bootstrap, topic, out_path, stop_path = sys.argv[1:5]
    out = open(out_path, "w", buffering=1)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 2, "message.timeout.ms": 120000, "reconnect.backoff.max.ms": 200})
    def report(err, msg):
        if err is None:
            out.write(json.dumps([msg.partition(), msg.offset(), msg.value().decode()]) + "\\n")
        else:
            out.write(json.dumps(["error", str(err)]) + "\\n")
    i = 0
    import os
    while not os.path.exists(stop_path):
        try:
            producer.produce(topic, value=b"v%d" % i, partition=i % 3, on_delivery=report)
            i += 1
        except BufferError:
            pass
        producer.poll(0.001 if i % 50 == 0 else 0)
    producer.flush(120)
    out.write(json.dumps(["produced", i]) + "\\n")
""")


@pytest.mark.parametrize("backend", DURABLE)
def test_kill9_during_a_producing_run_keeps_every_acked_message_once(make_broker, backend, tmp_path):
    """A producer keeps producing (acks=all, idempotent) while the broker is killed with -9 and
    restarted: every message whose delivery was acknowledged is stored exactly once, and the
    idempotent producer's retries create no duplicates at all."""
    broker = make_broker(backend)
    topic = unique_topic("midrun")
    create_topic(broker.bootstrap, topic, 3)
    reports = tmp_path / "reports.jsonl"
    stop = tmp_path / "stop"
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER_SCRIPT)
    producer = subprocess.Popen([sys.executable, str(script), broker.bootstrap, topic, str(reports), str(stop)])
    try:
        def acked_count():
            return sum(1 for line in reports.read_text().splitlines() if not line.startswith('["')) \
                if reports.exists() else 0
        deadline = time.monotonic() + 120
        while acked_count() < 20_000:
            assert time.monotonic() < deadline, "producer made no progress"
            time.sleep(0.05)
        broker.kill()
        time.sleep(0.5)
        broker.start()
        before = acked_count()
        deadline = time.monotonic() + 120
        while acked_count() < before + 20_000:
            assert time.monotonic() < deadline, "producer did not resume after the restart"
            time.sleep(0.05)
    finally:
        stop.touch()
        producer.wait(timeout=180)
    lines = [json.loads(line) for line in reports.read_text().splitlines()]
    errors = [line for line in lines if line[0] == "error"]
    assert errors == [], errors[:5]
    acked = {(p, offset, value) for p, offset, value in (line for line in lines if isinstance(line[0], int))}
    per_partition = {p: sorted((o, v) for (q, o, v) in acked if q == p) for p in range(3)}
    ends = watermarks(broker.bootstrap, topic, 3)
    got = consume_all(broker.bootstrap, topic, {p: ends[p][1] for p in range(3)}, timeout_s=300)
    all_values = [m.value().decode() for p in range(3) for m in got[p]]
    assert len(all_values) == len(set(all_values)), "a message is stored twice"
    for p in range(3):
        stored = {m.offset(): m.value().decode() for m in got[p]}
        for offset, value in per_partition[p]:
            assert stored.get(offset) == value, f"acked {value} at {p}/{offset} is missing"


@pytest.mark.parametrize("backend", DURABLE)
def test_reads_after_restart(make_broker, backend):
    """After kill -9 and restart: 50 × 1 KiB messages persisted before are all readable with CRC
    checks, a fetch from the middle starts at the right offset, and offsets_for_times works."""
    broker = make_broker(backend)
    topic = unique_topic("after")
    create_topic(broker.bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    base = 1_700_000_000_000
    values = [bytes([i]) * 1024 for i in range(50)]
    for i, value in enumerate(values):
        producer.produce(topic, value=value, partition=0, timestamp=base + 1000 * i)
        producer.poll(0)
    assert producer.flush(30) == 0
    broker.kill()
    broker.start()

    got = consume_all(broker.bootstrap, topic, {0: 50})
    assert [m.value() for m in got[0]] == values
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "e2e-after", "check.crcs": True})
    try:
        consumer.assign([TopicPartition(topic, 0, 37)])
        msg = None
        deadline = time.monotonic() + 30
        while msg is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
        assert msg is not None and msg.error() is None
        assert (msg.offset(), msg.value()) == (37, values[37])
        found = consumer.offsets_for_times([TopicPartition(topic, 0, base + 1000 * 21 - 1)], timeout=10)
        assert found[0].offset == 21
    finally:
        consumer.close()


@pytest.mark.parametrize("acks", ["1", "all"])
def test_a_full_uring_staging_area_slows_producers_instead_of_failing_them(make_broker, acks):
    """uring with a 64 KiB staging area: batches of up to 1 MB outrun the WAL writes and are larger
    than staging itself, so the backend answers BUSY; the broker holds those appends until there is
    room. With client retries off, every message is acknowledged and reads back once, in order."""
    if "uring" not in DURABLE:
        pytest.skip("the uring backend is not selected (FJORD_E2E_BACKENDS)")
    broker = make_broker("uring", extra_args=["--backend-option", "uring.staging.bytes=65536",
                                              "--backend-option", "uring.write.bytes=16384"])
    topic = unique_topic("staging")
    create_topic(broker.bootstrap, topic, 4)
    acked = produce_acked(broker.bootstrap, topic, 40_000, partitions=4, value_bytes=1024,
                          extra={"acks": acks, "enable.idempotence": False, "retries": 0, "linger.ms": 20,
                                 "batch.size": 1_000_000, "batch.num.messages": 100_000})
    assert sum(len(messages) for messages in acked.values()) == 40_000
    got = consume_all(broker.bootstrap, topic, {p: len(messages) for p, messages in acked.items()})
    for p, messages in acked.items():
        assert [(m.offset(), m.value()) for m in got[p]] == messages


def run_fjord(args, timeout=30):
    return subprocess.run([BINARY, *args], capture_output=True, timeout=timeout)


def test_missing_data_directory_stops_startup_with_one_line(tmp_path):
    """A data directory that does not exist stops startup with one clear line and a non-zero exit."""
    result = run_fjord(["--backend", DURABLE[0], "--data-dir", str(tmp_path / "nope"),
                        "--listen", f"127.0.0.1:{free_port()}"])
    assert result.returncode != 0
    err = result.stderr.decode().strip().splitlines()
    assert len([line for line in err if "error" in line.lower()]) == 1, err
    assert "does not exist" in result.stderr.decode()


def test_locked_data_directory_stops_the_second_broker(make_broker, tmp_path):
    """Two brokers can never share a data directory: the second stops at startup, naming the lock."""
    first = make_broker(DURABLE[0])
    result = run_fjord(["--backend", DURABLE[0], "--data-dir", str(first.data_dir),
                        "--listen", f"127.0.0.1:{free_port()}"])
    assert result.returncode != 0
    assert "locked" in result.stderr.decode()
    assert first.is_running()


def mount_tmpfs(path: pathlib.Path, size: str, read_only=False) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def umount(path: pathlib.Path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_unwritable_data_directory_stops_startup(tmp_path):
    """A read-only data directory stops startup with one clear line."""
    target = tmp_path / "ro"
    if not mount_tmpfs(target, "1m", read_only=True):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        result = run_fjord(["--backend", DURABLE[0], "--data-dir", str(target),
                            "--listen", f"127.0.0.1:{free_port()}"])
        assert result.returncode != 0
        assert "not writable" in result.stderr.decode()
    finally:
        umount(target)


@pytest.mark.parametrize("backend", DURABLE)
def test_disk_full_is_a_storage_error_and_recovers_when_space_returns(tmp_path, backend):
    """With the data directory on a full file system, produce gets KAFKA_STORAGE_ERROR, the broker
    keeps serving reads, and producing works again once space is freed."""
    mountpoint = tmp_path / "small"
    if not mount_tmpfs(mountpoint, "48m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    broker = None
    try:
        data = mountpoint / "data"
        data.mkdir()
        broker = Broker(data, backend=backend,
                        extra_args=["--backend-option", f"uring.segment.bytes={4 << 20}"] if backend == "uring" else []).start()
        topic = unique_topic("full")
        create_topic(broker.bootstrap, topic, 1)
        filler = mountpoint / "filler"
        # Leave ~8 MiB free, then write until the device is full.
        free = os.statvfs(mountpoint).f_bavail * os.statvfs(mountpoint).f_frsize
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, free - (8 << 20)))
        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "retries": 0,
                             "enable.idempotence": False, "linger.ms": 0})
        results = []
        stored = 0
        for i in range(200):
            producer.produce(topic, value=b"y" * 100_000, partition=0, on_delivery=lambda e, m: results.append(e))
            producer.flush(30)
            if results[-1] is not None:
                break
            stored += 1
        assert results[-1] is not None, "the file system never filled up"
        assert results[-1].code() == KafkaError.KAFKA_STORAGE_ERROR
        # The broker still serves what it stored.
        assert watermarks(broker.bootstrap, topic, 1)[0] == (0, stored)
        got = consume_all(broker.bootstrap, topic, {0: stored}, extra={"fetch.max.bytes": 50_000_000})
        assert len(got[0]) == stored
        # Space returns: produce works again.
        filler.unlink()
        results.clear()
        deadline = time.monotonic() + 30
        while True:
            producer.produce(topic, value=b"z" * 1000, partition=0, on_delivery=lambda e, m: results.append(e))
            producer.flush(30)
            if results[-1] is None or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert results[-1] is None
        assert watermarks(broker.bootstrap, topic, 1)[0][1] == stored + 1
    finally:
        if broker is not None and broker.is_running():
            broker.stop()
        umount(mountpoint)


@pytest.mark.parametrize("backend", DURABLE)
def test_retention_advances_the_log_start(make_broker, backend):
    """retention.bytes deletes whole old segments; ListOffsets earliest follows and reads below it
    are out of range."""
    broker = make_broker(backend, extra_args=["--retention-check-interval-ms", "200"])
    topic = unique_topic("retention")
    create_topic(broker.bootstrap, topic, 1, config={"retention.bytes": "200000", "segment.bytes": "50000"})
    # One message per batch: librdkafka would otherwise pack all 400 into one batch, and a batch
    # (one log entry) is never split across segments.
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0,
                         "batch.num.messages": 1})
    for i in range(400):
        producer.produce(topic, value=b"r" * 2000, partition=0)
        producer.poll(0)
    assert producer.flush(30) == 0
    # Retention runs every 200 ms; wait until it has advanced the start and then left it alone
    # for a second (the last passes may still run after the producer finished).
    deadline = time.monotonic() + 30
    previous, stable_since = None, time.monotonic()
    while True:
        low, high = watermarks(broker.bootstrap, topic, 1)[0]
        if low != previous:
            previous, stable_since = low, time.monotonic()
        if low > 0 and time.monotonic() - stable_since >= 1.0:
            break
        assert time.monotonic() < deadline, "retention never advanced the log start (or never settled)"
        time.sleep(0.1)
    assert high == 400 and 0 < low < 400
    got = consume_all(broker.bootstrap, topic, {0: high - low}, extra={"auto.offset.reset": "earliest"})
    # consume_all assigns from offset 0, below the start: the consumer resets to earliest.
    assert got[0][0].offset() == low
