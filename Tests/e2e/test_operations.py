"""Operating fjord (issue 16): /metrics and /health on --metrics-listen, server.properties with
flags over FJORD_ environment over the file, and a graceful SIGTERM under load."""

import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from conftest import BINARY, backends, durable_backends, free_port, unique_topic

SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """GET /metrics, parsed into {(name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SERIES.match(line)
        assert match, f"not a Prometheus sample: {line!r}"
        name, labels, value = match.groups()
        pairs = frozenset(re.findall(r'([a-zA-Z_]+)="([^"]*)"', labels or ""))
        series[(name, pairs)] = float(value)
    return series


def value(series, name: str, **labels) -> float:
    """The sum of `name` over the series that carry `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, pairs), v in series.items() if n == name and wanted <= pairs)


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("backend", backends())
def test_metrics_follow_what_clients_did(make_broker, backend):
    metrics_port = free_port()
    broker = make_broker(backend, extra_args=["--metrics-listen", f"127.0.0.1:{metrics_port}"])
    assert http_status(metrics_port, "/health/live") == 200
    assert http_status(metrics_port, "/health/ready") == 200
    topic = unique_topic("ops")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=30)
    before = scrape(metrics_port)

    count, size = 500, 100
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "compression.type": "none"})
    delivered = []
    for index in range(count):
        producer.produce(topic, value=bytes([index % 256]) * size, partition=index % 2,
                         on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(30) == 0
    assert delivered == [None] * count

    group = unique_topic("group")
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    received = 0
    deadline = time.monotonic() + 30
    while received < count and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            received += 1
    assert received == count
    # Commit part of partition 0 only: its lag is what remains.
    consumer.commit(offsets=[TopicPartition(topic, 0, 100)], asynchronous=False)
    watermarks = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in (0, 1)]
    consumer.close()

    after = scrape(metrics_port)
    moved = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)
    assert moved("fjord_produce_records_total") == count
    batches = moved("fjord_produce_batches_total")
    assert 2 <= batches <= count
    # Each record's value plus its framing: at least the payload, far less than twice it.
    assert count * size <= moved("fjord_produce_bytes_total") < 2 * count * size
    assert moved("fjord_requests_total", api="Produce") >= 1
    assert moved("fjord_requests_total", api="Fetch") >= 1
    assert moved("fjord_request_duration_seconds_count", api="Produce") == moved("fjord_requests_total", api="Produce")
    assert moved("fjord_fetch_bytes_total") >= count * size
    assert value(after, "fjord_requests_total", api="OffsetCommit") >= 1
    for partition, (low, high) in enumerate(watermarks):
        labels = {"topic": topic, "partition": str(partition)}
        assert value(after, "fjord_partition_log_start_offset", **labels) == low
        assert value(after, "fjord_partition_log_end_offset", **labels) == high
        assert value(after, "fjord_partition_high_watermark", **labels) == high
        assert value(after, "fjord_partition_size_bytes", **labels) > 0
    assert value(after, "fjord_group_committed_offset", group=group, topic=topic, partition="0") == 100
    assert value(after, "fjord_group_lag", group=group, topic=topic, partition="0") == watermarks[0][1] - 100
    # The host measures every backend's appends; each backend reports its own figures too.
    assert value(after, "fjord_storage_append_duration_seconds_count", backend=backend) > 0
    assert value(after, "fjord_storage_appends_total", backend=backend) >= batches
    if backend != "memory":
        assert value(after, "fjord_storage_sync_duration_seconds_count", backend=backend) > 0
    # Figures every built-in backend reports itself (KSTORE_CONTROL_STATS).
    assert value(after, "fjord_storage_backend_appends_total", backend=backend) >= batches
    if backend != "memory":
        assert value(after, "fjord_storage_backend_syncs_total", backend=backend) > 0
        assert value(after, "fjord_storage_backend_synced_bytes_total", backend=backend) > 0
        assert value(after, "fjord_storage_bytes_per_sync", backend=backend) > 0
    if backend == "file":
        # The descriptor cache's gauge: the two partitions' segment files at least, within the bound.
        open_descriptors = value(after, "fjord_storage_backend_open_descriptors", backend="file")
        assert 2 <= open_descriptors <= value(after, "fjord_storage_backend_open_descriptors_limit", backend="file")


def run_fjord(args, env_extra=None, cwd=None):
    """Starts fjord with exactly `args`; returns the process (stdout and stderr piped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FJORD_")}
    env.update(env_extra or {})
    return subprocess.Popen([BINARY, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)


def wait_ready(proc, metrics_port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            if http_status(metrics_port, "/health/ready") == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("fjord did not become ready")


def stop(proc) -> str:
    os.kill(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output.decode()
    return output.decode()


def test_a_properties_file_drives_the_broker_and_flags_override_it(tmp_path):
    port, metrics_port = free_port(), free_port()
    data = tmp_path / "data"
    data.mkdir()
    properties = tmp_path / "server.properties"
    properties.write_text(
        "# a comment\n"
        f"listeners=PLAINTEXT://127.0.0.1:{port}\n"
        f"log.dirs={data}\n"
        "fjord.backend=file\n"
        "num.partitions=3\n"
        "message.max.bytes=500000\n"
        f"fjord.metrics.listen=127.0.0.1:{metrics_port}\n"
    )
    # The environment overrides the file, a flag overrides both.
    proc = run_fjord(["--config", str(properties), "--default-partitions", "5"],
                     env_extra={"FJORD_NUM_PARTITIONS": "4", "FJORD_MESSAGE_MAX_BYTES": "600000"})
    try:
        wait_ready(proc, metrics_port)
        bootstrap = f"127.0.0.1:{port}"
        producer = Producer({"bootstrap.servers": bootstrap})
        topic = unique_topic("props")
        producer.produce(topic, b"x")
        assert producer.flush(30) == 0
        admin = AdminClient({"bootstrap.servers": bootstrap})
        assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 5
        resource = ConfigResource(ConfigResource.Type.BROKER, "1")
        configs = admin.describe_configs([resource])[resource].result(timeout=10)
        assert configs["num.partitions"].value == "5"
        assert configs["message.max.bytes"].value == "600000"
        assert configs["message.max.bytes"].source == 4  # STATIC_BROKER_CONFIG
        assert configs["log.dirs"].value == str(data)
        assert any(data.iterdir()), "the file backend wrote into log.dirs"
    finally:
        output = stop(proc)
    assert f"config num.partitions=5 (command line --default-partitions)" in output
    assert "config message.max.bytes=600000 (environment FJORD_MESSAGE_MAX_BYTES)" in output
    assert f"config fjord.backend=file ({properties}:4)" in output


def test_bad_keys_and_values_are_reported_with_their_line(tmp_path):
    properties = tmp_path / "server.properties"
    properties.write_text("num.partitions=3\nnum.partitons=4\nmessage.max.bytes=lots\n")
    proc = run_fjord(["--config", str(properties)])
    output, _ = proc.communicate(timeout=30)
    text = output.decode()
    assert proc.returncode == 2, text
    assert "num.partitons" in text and "line 2" in text, text
    assert "message.max.bytes" in text and "line 3" in text, text


def test_json_logs_are_one_object_per_line(tmp_path):
    import json

    port, metrics_port = free_port(), free_port()
    proc = run_fjord(["--backend", "memory", "--listen", f"127.0.0.1:{port}", "--metrics-listen",
                      f"127.0.0.1:{metrics_port}", "--log-format", "json", "--data-dir", str(tmp_path)])
    wait_ready(proc, metrics_port)
    output = stop(proc)
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) > 5
    for line in lines:
        record = json.loads(line)
        assert {"timestamp", "level", "label", "message"} <= record.keys()


@pytest.mark.parametrize("backend", durable_backends())
def test_sigterm_under_load_loses_no_acknowledged_message(make_broker, backend):
    broker = make_broker(backend)
    topic = unique_topic("term")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result(timeout=30)
    acknowledged = set()
    stop_producing = threading.Event()

    def produce():
        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2,
                             "message.timeout.ms": 5000})

        def on_delivery(err, msg):
            if err is None:
                acknowledged.add(msg.value())

        index = 0
        while not stop_producing.is_set():
            try:
                producer.produce(topic, value=b"m%08d" % index, partition=index % 4, on_delivery=on_delivery)
                index += 1
            except BufferError:
                producer.poll(0.01)
            producer.poll(0)
        producer.flush(10)

    thread = threading.Thread(target=produce)
    thread.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert broker.stop(signal.SIGTERM) == 0
    stop_producing.set()
    thread.join(30)
    assert len(acknowledged) >= 2000
    broker.start()
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic("g"),
                         "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    seen = set()
    deadline = time.monotonic() + 30
    while not acknowledged <= seen and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            seen.add(message.value())
    consumer.close()
    assert acknowledged <= seen, f"{len(acknowledged - seen)} acknowledged messages lost"


def test_ready_is_503_during_recovery_and_the_recovery_time_is_reported(make_broker, tmp_path):
    """Many partitions with data on the file backend, kill -9, restart: the metrics listener
    answers from before recovery, /health/ready says 503 until the Kafka listener accepts, then 200,
    and fjord_storage_recovery_seconds tells how long it took."""
    broker = make_broker("file")
    topic = unique_topic("recover")
    partitions = 256
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(timeout=60)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "batch.size": 262144,
                         "compression.type": "none", "acks": "all"})
    payload = b"r" * 1000
    for index in range(60_000):
        while True:
            try:
                producer.produce(topic, value=payload, partition=index % partitions)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0
    broker.kill()

    metrics_port = free_port()
    proc = run_fjord(["--backend", "file", "--data-dir", str(broker.data_dir), "--listen", broker.bootstrap,
                      "--metrics-listen", f"127.0.0.1:{metrics_port}"])
    try:
        statuses = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not statuses or statuses[-1] != 200):
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                statuses.append(http_status(metrics_port, "/health/ready"))
            except OSError:
                time.sleep(0.002)  # Not listening yet.
        assert statuses and statuses[-1] == 200, statuses
        assert statuses[0] == 503, f"ready before recovery could be seen: {statuses[:5]}"
        assert set(statuses) == {503, 200}, set(statuses)
        assert http_status(metrics_port, "/health/live") == 200
        after = scrape(metrics_port)
        assert value(after, "fjord_ready") == 1
        recovery = value(after, "fjord_storage_recovery_seconds", backend="file")
        assert recovery > 0
        assert value(after, "fjord_storage_backend_recovered_logs_total", backend="file") >= partitions
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic("g")})
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.close()
        assert high > 0, "the data survived the restart"
    finally:
        stop(proc)
