"""confluent-kafka (librdkafka 2.16) against the real fjord binary."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import unique_topic


@pytest.fixture
def broker(broker_on_each_backend):
    """This module's tests run against every backend."""
    return broker_on_each_backend


def create_topic(bootstrap: str, topic: str, partitions: int, config: dict | None = None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})])
    futures[topic].result(30)


def consume_all(bootstrap: str, topic: str, expected: dict[int, int], extra: dict | None = None, timeout_s: float = 120):
    """Reads every partition from offset 0 to its expected end in assign mode, CRC checks on.
    Returns {partition: [Message, ...]}."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "e2e-assign-only",  # required by the client; nothing is committed
        "enable.auto.commit": False,
        "check.crcs": True,
        "auto.offset.reset": "earliest",
        **(extra or {}),
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in expected])
    got: dict[int, list] = {p: [] for p in expected}
    deadline = time.monotonic() + timeout_s
    try:
        while any(len(got[p]) < n for p, n in expected.items()):
            assert time.monotonic() < deadline, f"timed out: {[(p, len(m)) for p, m in got.items()]} of {expected}"
            for msg in consumer.consume(num_messages=10000, timeout=1.0):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(msg.error())
                got[msg.partition()].append(msg)
    finally:
        consumer.close()
    return got


def test_20000_keyed_messages_with_headers_round_trip_exactly_once(broker):
    """20,000 messages with keys, headers and timestamps to 3 partitions (acks=all) come back exactly
    once, in order, intact, at the offsets the delivery reports gave, with CRC checks on; the high
    watermarks equal the acked counts right after flush."""
    topic = unique_topic("c20k")
    create_topic(broker.bootstrap, topic, 3)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5,
                         "enable.idempotence": True})
    reports = {}
    errors = []
    base_ts = int(time.time() * 1000) - 1_000_000

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            reports[msg.key()] = (msg.partition(), msg.offset())

    n = 20_000
    for i in range(n):
        while True:
            try:
                producer.produce(topic, key=b"key-%d" % i, value=b"value-%d-" % i + b"x" * (i % 200),
                                 partition=i % 3, headers=[("seq", str(i).encode()), ("empty", b"")],
                                 timestamp=base_ts + i, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert errors == []
    assert len(reports) == n

    acked = {p: 0 for p in range(3)}
    for partition, _ in reports.values():
        acked[partition] += 1
    # No waiting: the high watermark is the acked count the moment flush returns.
    watcher = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "e2e-watermarks"})
    try:
        for p in range(3):
            low, high = watcher.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assert (low, high) == (0, acked[p])
    finally:
        watcher.close()

    got = consume_all(broker.bootstrap, topic, acked)
    seen = set()
    for partition, messages in got.items():
        offsets = [m.offset() for m in messages]
        assert offsets == list(range(len(messages))), "offsets dense and in order"
        for msg in messages:
            i = int(msg.key().split(b"-")[1])
            assert msg.key() not in seen
            seen.add(msg.key())
            assert reports[msg.key()] == (partition, msg.offset())
            assert msg.value() == b"value-%d-" % i + b"x" * (i % 200)
            assert msg.headers() == [("seq", str(i).encode()), ("empty", b"")]
            assert msg.timestamp()[1] == base_ts + i
    assert len(seen) == n


def test_offsets_for_times_returns_first_offset_at_or_after(broker):
    """offsets_for_times finds the first record whose timestamp is at or after the query, also
    inside a batch, and -1 past the end."""
    topic = unique_topic("times")
    create_topic(broker.bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 50})
    base = 1_700_000_000_000
    for i in range(100):
        producer.produce(topic, value=b"m%d" % i, partition=0, timestamp=base + 10 * i)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "e2e-times"})
    try:
        for query, expected in [(base, 0), (base + 1, 1), (base + 10 * 57, 57), (base + 10 * 57 - 3, 57),
                                (base - 5000, 0), (base + 10 * 99, 99), (base + 10 * 99 + 1, -1)]:
            result = consumer.offsets_for_times([TopicPartition(topic, 0, query)], timeout=10)
            assert result[0].error is None
            assert result[0].offset == expected, f"timestamp {query}"
    finally:
        consumer.close()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_round_trip(broker, codec):
    """Batches compressed by librdkafka are accepted, stored verbatim and consumed with CRC checks on."""
    topic = unique_topic(f"codec-{codec}")
    create_topic(broker.bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "compression.codec": codec,
                         "linger.ms": 20, "acks": "all"})
    n = 2000
    for i in range(n):
        producer.produce(topic, key=b"k%d" % i, value=(b"payload-%d " % i) * 10, partition=0)
    assert producer.flush(30) == 0
    got = consume_all(broker.bootstrap, topic, {0: n})
    assert [m.value() for m in got[0]] == [(b"payload-%d " % i) * 10 for i in range(n)]
    assert [m.offset() for m in got[0]] == list(range(n))


def test_900kb_message_is_accepted_and_15mb_message_is_too_large(broker):
    """A 900 KB message round-trips; a 15 MB one is refused with MESSAGE_TOO_LARGE and the broker
    keeps serving."""
    topic = unique_topic("sizes")
    create_topic(broker.bootstrap, topic, 1)
    results = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 20_000_000,
                         "acks": "all", "retries": 0})
    big = bytes(range(256)) * (900_000 // 256)
    producer.produce(topic, value=big, partition=0, on_delivery=lambda e, m: results.append(e))
    assert producer.flush(30) == 0
    assert results == [None]

    results.clear()
    producer.produce(topic, value=b"z" * 15_000_000, partition=0, on_delivery=lambda e, m: results.append(e))
    assert producer.flush(60) == 0
    assert len(results) == 1 and results[0] is not None
    assert results[0].code() == KafkaError.MSG_SIZE_TOO_LARGE

    results.clear()
    producer.produce(topic, value=b"after", partition=0, on_delivery=lambda e, m: results.append(e))
    assert producer.flush(30) == 0
    assert results == [None]
    got = consume_all(broker.bootstrap, topic, {0: 2}, extra={"fetch.max.bytes": 2_000_000})
    assert [m.value() for m in got[0]] == [big, b"after"]


def test_admin_create_describe_delete_topic(broker):
    """AdminClient creates a topic with configs, describes them, refuses bad requests and deletes it."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = unique_topic("admin")
    admin.create_topics([NewTopic(topic, 4, 1, config={"retention.ms": "3600000"})])[topic].result(30)

    with pytest.raises(KafkaException) as exists:
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    assert exists.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    rf_topic = unique_topic("rf")
    with pytest.raises(KafkaException) as bad_rf:
        admin.create_topics([NewTopic(rf_topic, 1, 3)])[rf_topic].result(30)
    assert bad_rf.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    config_topic = unique_topic("cfg")
    with pytest.raises(KafkaException) as bad_config:
        admin.create_topics([NewTopic(config_topic, 1, 1, config={"no.such.config": "1"})])[config_topic].result(30)
    assert bad_config.value.args[0].code() == KafkaError.INVALID_CONFIG

    metadata = admin.list_topics(timeout=10)
    assert len(metadata.topics[topic].partitions) == 4

    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(30)
    assert configs["retention.ms"].value == "3600000"
    assert not configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "delete"
    broker_resource = ConfigResource(ResourceType.BROKER, "1")
    broker_configs = admin.describe_configs([broker_resource])[broker_resource].result(30)
    assert broker_configs["message.max.bytes"].value == "1048588"

    admin.delete_topics([topic])[topic].result(30)
    assert topic not in admin.list_topics(timeout=10).topics
