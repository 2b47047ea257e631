"""Thousands of partitions on the file backend under a small open-file limit (issue 13): the backend
leases every descriptor from a bounded cache (file.open.files.max, by default half the soft
RLIMIT_NOFILE), so 5,000 partitions produce, consume and restart under `ulimit -n 1024`, where it
used to hold four descriptors per partition and manage only about 250."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, unique_topic

OPEN_FILES = 1024
TOPICS = 5
PARTITIONS_PER_TOPIC = 1_000
# Every client call below is bounded by one of these.
CLIENT_TIMEOUT_S = 120


def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, PARTITIONS_PER_TOPIC, 1) for name in names],
                                  request_timeout=CLIENT_TIMEOUT_S)
    for future in futures.values():
        future.result(CLIENT_TIMEOUT_S)


def produce_one_each(bootstrap: str, names: list[str]) -> dict[tuple[str, int], bytes]:
    """One acks=all message to every partition; returns what was acknowledged where."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 50,
                         "queue.buffering.max.messages": 100_000})
    acked: dict[tuple[str, int], bytes] = {}
    errors = []

    def report(err, msg):
        if err:
            errors.append(err)
        else:
            acked[(msg.topic(), msg.partition())] = msg.value()

    for name in names:
        for partition in range(PARTITIONS_PER_TOPIC):
            producer.produce(name, value=f"{name}/{partition}".encode(), partition=partition, on_delivery=report)
        producer.poll(0)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    assert errors == [], errors[:3]
    return acked


def consume_all(bootstrap: str, names: list[str], expected: int) -> dict[tuple[str, int], bytes]:
    """Reads every partition from offset 0 until `expected` messages arrived (or the timeout)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("g"),
                         "enable.auto.commit": False})
    got: dict[tuple[str, int], bytes] = {}
    try:
        consumer.assign([TopicPartition(name, partition, 0)
                         for name in names for partition in range(PARTITIONS_PER_TOPIC)])
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while len(got) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                assert message.error() is None, message.error()
                key = (message.topic(), message.partition())
                assert key not in got, f"{key} read twice"
                got[key] = message.value()
    finally:
        consumer.close()
    return got


def test_five_thousand_partitions_work_under_ulimit_1024(tmp_path):
    """fjord under RLIMIT_NOFILE 1,024 (soft and hard): CreateTopics of 5 × 1,000 partitions,
    one acks=all message to each, all consumed back; then a graceful restart and a kill -9, after
    each of which every message is read back again. The process never holds more descriptors than
    half its limit plus its sockets."""
    broker = Broker(tmp_path / "data", backend="file", open_files=OPEN_FILES)
    names = [unique_topic(f"wide{index}") for index in range(TOPICS)]
    partitions = TOPICS * PARTITIONS_PER_TOPIC
    try:
        started = time.monotonic()
        broker.start()
        create_topics(broker.bootstrap, names)
        acked = produce_one_each(broker.bootstrap, names)
        assert len(acked) == partitions
        held = broker.open_descriptors()
        print(f"{partitions} partitions: {held} descriptors held after produce")
        assert held < OPEN_FILES
        assert consume_all(broker.bootstrap, names, partitions) == acked
        print(f"created, produced and consumed in {time.monotonic() - started:.1f} s")

        for restart in ("SIGTERM", "kill -9"):
            if restart == "SIGTERM":
                assert broker.stop() == 0, broker.log_tail()
            else:
                broker.kill()
            started = time.monotonic()
            broker.start()
            listening = time.monotonic() - started
            held = broker.open_descriptors()
            print(f"after {restart}: listening after {listening:.1f} s holding {held} descriptors")
            assert held < OPEN_FILES
            assert consume_all(broker.bootstrap, names, partitions) == acked
        assert broker.stop() == 0, broker.log_tail()
        assert "Too many open files" not in broker.log_path.read_text(errors="replace")
    finally:
        if broker.is_running():
            broker.kill()
