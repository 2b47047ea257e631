"""kafka-python 3.x against the real fjord binary: idempotent producer (its default) and an
assign-mode consumer."""

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from conftest import unique_topic


@pytest.fixture
def broker(broker_on_each_backend):
    """This module's tests run against every backend."""
    return broker_on_each_backend


def test_idempotent_producer_and_assigned_consumer(broker):
    """1,000 keyed messages from an idempotent producer (acks=all) are read back exactly once, in order."""
    topic = unique_topic("kp")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    admin.close()

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    futures = [producer.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % 2) for i in range(1000)]
    producer.flush(30)
    offsets = {}
    for i, future in enumerate(futures):
        metadata = future.get(timeout=30)
        offsets[i] = (metadata.partition, metadata.offset)
    producer.close()
    assert sorted(o for p, o in offsets.values() if p == 0) == list(range(500))

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", check_crcs=True)
    partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    got = []
    deadline = time.monotonic() + 60
    while len(got) < 1000 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            got.extend(records)
    end_offsets = consumer.end_offsets(partitions)
    consumer.close()
    assert end_offsets == {partitions[0]: 500, partitions[1]: 500}
    assert len(got) == 1000
    for record in got:
        i = int(record.key[1:])
        assert record.value == b"v%d" % i
        assert offsets[i] == (record.partition, record.offset)
    for p in (0, 1):
        assert [r.offset for r in got if r.partition == p] == list(range(500))


@pytest.mark.parametrize("codec", ["gzip"])
def test_kafka_python_compressed_batches(broker, codec):
    """kafka-python's own compressed batches are accepted and read back."""
    topic = unique_topic("kp-codec")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=codec, linger_ms=20)
    for i in range(300):
        producer.send(topic, value=b"value %d" % i, partition=0)
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="earliest")
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = []
    deadline = time.monotonic() + 60
    while len(got) < 300 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            got.extend(r.value for r in records)
    consumer.close()
    assert got == [b"value %d" % i for i in range(300)]
