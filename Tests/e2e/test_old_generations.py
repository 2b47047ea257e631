"""The pre-0.11 generations through kafka-python with a pinned api_version (issue 17): (0, 10, 0)
speaks Produce v2 (magic 1 message sets, which the broker up-converts) and Fetch v2 (which it
answers with down-converted magic 1 sets); a current client reads the same messages."""

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from conftest import unique_topic


@pytest.fixture
def broker(broker_on_each_backend):
    return broker_on_each_backend


def read(bootstrap: str, topic: str, count: int, **config) -> list[tuple[int, bytes, bytes, int]]:
    # An explicit seek: the old generation's ListOffsets v0 is not needed to start at offset 0.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **config)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek(partition, 0)
    seen = []
    for _ in range(100):
        for records in consumer.poll(timeout_ms=500).values():
            seen.extend((r.offset, r.key, r.value, r.timestamp) for r in records)
        if len(seen) >= count:
            break
    consumer.close()
    return seen


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_v2_producer_and_v2_reader_see_the_same_messages(broker, compression):
    topic = unique_topic("old")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=(0, 10, 0), acks="all",
                             compression_type=compression, linger_ms=5)
    futures = [producer.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=0, timestamp_ms=1_700_000_000_000 + i)
               for i in range(200)]
    producer.flush(30)
    assert [f.get(timeout=30).offset for f in futures] == list(range(200))
    producer.close()
    expected = [(i, b"k%d" % i, b"v%d" % i, 1_700_000_000_000 + i) for i in range(200)]
    old = read(broker.bootstrap, topic, 200, api_version=(0, 10, 0))
    assert old == expected
    new = read(broker.bootstrap, topic, 200)
    assert new == expected
