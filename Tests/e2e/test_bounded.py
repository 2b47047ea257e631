"""Bounded under abuse: a client that does not read its Fetch responses, idle sockets, and a topic
creation that fails half-way cannot hurt the other clients or the data directory."""

import os
import pathlib
import resource
import socket
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, durable_backends, unique_topic
from kafka_raw import array, i8, i32, i64, request_frame, string

MIB = 1 << 20


def rss_bytes(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def fetch_v4(topic: str, offset: int, max_bytes: int, correlation_id: int) -> bytes:
    """Fetch v4 (non-flexible): replica -1, no wait, one partition from `offset`."""
    partition = i32(0) + i64(offset) + i32(max_bytes)
    body = (i32(-1) + i32(0) + i32(1) + i32(max_bytes) + i8(0)
            + array([string(topic) + array([partition])]))
    return request_frame(1, 4, correlation_id, body)


def produce_bulk(bootstrap: str, topic: str, count: int, size: int):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 20,
                         "message.max.bytes": 2 * MIB, "batch.size": 2 * MIB})
    value = os.urandom(size)
    failures = []
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, value, partition=0,
                                 on_delivery=lambda err, _msg: err and failures.append(err))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(120) == 0
    assert not failures, failures[:3]


def produce_and_consume(bootstrap: str, topic: str, count: int = 100, timeout_s: float = 20.0) -> int:
    """A well-behaved client: acks=all produce, then consume from the beginning. Returns how many
    messages it read back."""
    acked = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": int(timeout_s * 1000)})
    for i in range(count):
        producer.produce(topic, f"m{i}".encode(), on_delivery=lambda err, msg: err is None and acked.append(msg))
    producer.flush(timeout_s)
    assert len(acked) == count, f"{len(acked)} of {count} acked"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("g"),
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen = 0
    deadline = time.monotonic() + timeout_s
    while seen < count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            seen += 1
    consumer.close()
    return seen


@pytest.mark.parametrize("backend", durable_backends())
def test_a_client_that_does_not_read_big_fetches_keeps_rss_bounded(make_broker, backend):
    """64 pipelined Fetches of 50 MB over 200 MiB of data, never read: the broker's RSS stays bounded
    (it used to grow past 4.5 GiB) while another client produces and consumes normally."""
    broker = make_broker(backend=backend, extra_args=["--message-max-bytes", str(2 * MIB)])
    topic = unique_topic("big")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"max.message.bytes": str(2 * MIB)})])[topic].result(30)
    produce_bulk(broker.bootstrap, topic, count=200, size=MIB)
    time.sleep(1)
    before = rss_bytes(broker.proc.pid)

    hostile = socket.create_connection(("127.0.0.1", broker.port))
    hostile.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    frames = b"".join(fetch_v4(topic, 0, 50_000_000, c) for c in range(1, 65))
    hostile.sendall(frames)
    peak = before
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_bytes(broker.proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        time.sleep(3)
        assert produce_and_consume(broker.bootstrap, unique_topic("normal")) == 100
        time.sleep(2)
    finally:
        stop.set()
        sampler.join()
        hostile.close()
    growth = peak - before
    print(f"{backend}: RSS before {before / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB (+{growth / MIB:.0f} MiB)")
    # The connection's share of response memory is 64 MiB; the rest is buffers and page faults of
    # the reads. Before the budget, this load grew the RSS by gigabytes.
    assert growth < 400 * MIB, f"RSS grew by {growth / MIB:.0f} MiB"


def test_idle_connections_do_not_lock_out_a_real_client(make_broker):
    """1,100 connections from 127.0.0.1 that never send a byte, at default settings: a real client
    still produces and consumes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1400:
        pytest.skip(f"the open-file hard limit ({hard}) is too low for 1,100 sockets here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    broker = make_broker(backend="memory")
    idle = []
    try:
        for _ in range(1100):
            idle.append(socket.create_connection(("127.0.0.1", broker.port), timeout=10))
        started = time.monotonic()
        assert produce_and_consume(broker.bootstrap, unique_topic("real")) == 100
        print(f"real client served in {time.monotonic() - started:.1f} s with {len(idle)} idle connections open")
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_silent_connections_are_closed_after_the_first_request_timeout(make_broker):
    """A connection that sends no complete request is closed after --first-request-timeout-ms."""
    broker = make_broker(backend="memory", extra_args=["--first-request-timeout-ms", "1000"])
    sock = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
    started = time.monotonic()
    assert sock.recv(1) == b""
    assert time.monotonic() - started < 8
    sock.close()


def mount_tmpfs(path: pathlib.Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_topic_creation_that_fails_half_way_leaves_nothing_behind(tmp_path):
    """On a file system that runs out of inodes half way through a 3,000-partition CreateTopics,
    the creation fails with an error, no partition of it is left, the broker keeps serving and
    restarts cleanly."""
    mountpoint = tmp_path / "few-inodes"
    if not mount_tmpfs(mountpoint, "size=256m,nr_inodes=4000"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    broker = Broker(mountpoint / "data", backend="file")
    try:
        broker.start()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        future = admin.create_topics([NewTopic("wide", 3000, 1)], request_timeout=120)["wide"]
        with pytest.raises(Exception) as failure:
            future.result(120)
        print(f"CreateTopics failed as expected: {failure.value}")
        left = [name for name in os.listdir(mountpoint / "data" / "logs") if name.startswith("wide-")]
        assert left == [], f"{len(left)} partitions of the failed topic were left behind"
        assert produce_and_consume(broker.bootstrap, unique_topic("after")) == 100
        assert broker.stop() == 0
        broker.start()
        assert "wide" not in admin.list_topics(timeout=30).topics
        assert produce_and_consume(broker.bootstrap, unique_topic("restarted")) == 100
        assert broker.stop() == 0
    finally:
        if broker.is_running():
            broker.kill()
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
