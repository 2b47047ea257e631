"""The admin surface operators use (issue 15), with confluent-kafka's AdminClient, kafka-python's and
aiokafka's admin clients against the real binary on the durable backends: growing partitions (producers
and group consumers pick them up), deleting records, altering topic and broker configs (enforced,
described with their sources, kept across a restart), log dirs with sizes, topic compression.type for
every codec (consumers with CRC checks read every message byte for byte), LogAppendTime, record errors."""

import asyncio
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   NewTopic, ResourceType)

import kafka_raw
from conftest import durable_backends, unique_topic

WAIT_S = 60
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
# compression.type values and the attribute codec id each stores batches with.
TOPIC_CODECS = {"uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@pytest.fixture(params=durable_backends())
def backend(request):
    return request.param


def admin(broker) -> AdminClient:
    """One AdminClient per broker, kept alive with it (a collected client fails its pending futures)."""
    if not hasattr(broker, "admin_client"):
        broker.admin_client = AdminClient({"bootstrap.servers": broker.bootstrap})
    return broker.admin_client


def create_topic(broker, topic: str, partitions: int = 1, config: dict | None = None):
    admin(broker).create_topics([NewTopic(topic, partitions, 1, config=config or {})])[topic].result(30)


def produce(broker, topic: str, messages, **config) -> list:
    """Produces (partition, key, value) messages with acks=all; returns the delivered messages."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5, **config})
    delivered, errors = [], []

    def report(err, msg):
        (errors if err else delivered).append(err or msg)

    for partition, key, value in messages:
        producer.produce(topic, key=key, value=value, partition=partition, on_delivery=report)
    assert producer.flush(30) == 0
    assert not errors, errors
    return delivered


def consume(broker, topic: str, expected: dict[int, int], start: dict[int, int] | None = None, **config) -> dict:
    """Reads each partition in assign mode (CRC checks on) until it has the expected count."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "e2e-admin-assign", "check.crcs": True,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest", **config})
    consumer.assign([TopicPartition(topic, p, (start or {}).get(p, 0)) for p in expected])
    got = {p: [] for p in expected}
    deadline = time.monotonic() + WAIT_S
    try:
        while any(len(got[p]) < n for p, n in expected.items()):
            assert time.monotonic() < deadline, f"timed out: {[(p, len(m)) for p, m in got.items()]} of {expected}"
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(msg.error())
                got[msg.partition()].append(msg)
    finally:
        consumer.close()
    return got


def described(broker, resource: ConfigResource) -> dict:
    return admin(broker).describe_configs([resource])[resource].result(30)


def incremental(broker, resource_type, name: str, configs: dict):
    entries = [ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET if value is not None
                           else AlterConfigOpType.DELETE) for key, value in configs.items()]
    resource = ConfigResource(resource_type, name, incremental_configs=entries)
    admin(broker).incremental_alter_configs([resource])[resource].result(30)


# MARK: confluent-kafka (librdkafka 2.16)

def test_confluent_grown_partitions_take_produces_and_a_group_rebalances_onto_them(make_broker, backend):
    """CreatePartitions 2 → 4: producers write to the new partitions, and a group consumer (cooperative-sticky,
    metadata refreshed every second) notices, rebalances and reads them; shrinking is refused."""
    broker = make_broker(backend=backend)
    topic = unique_topic("grow")
    create_topic(broker, topic, 2)
    produce(broker, topic, [(p, b"k", b"before-%d" % p) for p in range(2)])
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic("g"),
                         "auto.offset.reset": "earliest", "topic.metadata.refresh.interval.ms": 1000,
                         "partition.assignment.strategy": "cooperative-sticky", "check.crcs": True})
    consumer.subscribe([topic])
    seen = {}
    deadline = time.monotonic() + WAIT_S
    try:
        while len(seen) < 2:
            assert time.monotonic() < deadline, seen
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                seen[msg.partition()] = msg.value()
        admin(broker).create_partitions([NewPartitions(topic, 4)])[topic].result(30)
        metadata = admin(broker).list_topics(topic, timeout=30).topics[topic]
        assert sorted(metadata.partitions) == [0, 1, 2, 3]
        produce(broker, topic, [(p, b"k", b"after-%d" % p) for p in (2, 3)])
        while len(seen) < 4:
            assert time.monotonic() < deadline, f"the group did not pick up the new partitions: {seen}"
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                seen[msg.partition()] = msg.value()
        assert {tp.partition for tp in consumer.assignment()} == {0, 1, 2, 3}
    finally:
        consumer.close()
    assert seen[2] == b"after-2" and seen[3] == b"after-3"
    with pytest.raises(KafkaException) as refused:
        admin(broker).create_partitions([NewPartitions(topic, 3)])[topic].result(30)
    assert refused.value.args[0].code() == KafkaError.INVALID_PARTITIONS


def test_confluent_delete_records_moves_the_low_watermark_and_survives_a_restart(make_broker, backend):
    """DeleteRecords at 40 of 100: the low watermark is 40, a consumer asking for offset 10 with
    auto.offset.reset=earliest starts at 40, and the start survives a restart."""
    broker = make_broker(backend=backend)
    topic = unique_topic("del")
    create_topic(broker, topic, 1)
    produce(broker, topic, [(0, None, b"m%d" % i) for i in range(100)])
    result = admin(broker).delete_records([TopicPartition(topic, 0, 40)])
    deleted = next(iter(result.values())).result(30)
    assert deleted.low_watermark == 40
    got = consume(broker, topic, {0: 60}, start={0: 10})
    assert [m.offset() for m in got[0]] == list(range(40, 100))
    assert got[0][0].value() == b"m40"
    broker.restart()
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "e2e-wm"})
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30) == (40, 100)
    finally:
        consumer.close()


def test_confluent_topic_and_broker_configs_are_enforced_described_and_kept(make_broker, backend):
    """IncrementalAlterConfigs on a topic (max.message.bytes) and on the broker (log.retention.ms per broker,
    message.max.bytes cluster-wide): enforced at once, described with their sources, kept after a restart."""
    broker = make_broker(backend=backend)
    topic = unique_topic("cfg")
    create_topic(broker, topic, 1)
    incremental(broker, ResourceType.TOPIC, topic, {"max.message.bytes": "2000"})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "message.max.bytes": 100_000})
    errors = []
    producer.produce(topic, value=b"x" * 5000, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(30)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    incremental(broker, ResourceType.BROKER, "1", {"log.retention.ms": "3600000"})
    with kafka_raw.Connection(broker.bootstrap) as connection:
        assert connection.incremental_alter_configs(4, "", {"message.max.bytes": "500000"}) == (0, None)

    def check():
        topic_configs = described(broker, ConfigResource(ResourceType.TOPIC, topic))
        assert topic_configs["max.message.bytes"].value == "2000"
        assert topic_configs["max.message.bytes"].source == 1  # DYNAMIC_TOPIC_CONFIG
        assert topic_configs["retention.ms"].value == "3600000"
        assert topic_configs["retention.ms"].source == 2  # DYNAMIC_BROKER_CONFIG
        broker_configs = described(broker, ConfigResource(ResourceType.BROKER, "1"))
        assert broker_configs["log.retention.ms"].value == "3600000"
        assert broker_configs["log.retention.ms"].source == 2
        assert broker_configs["message.max.bytes"].value == "500000"
        assert broker_configs["message.max.bytes"].source == 3  # DYNAMIC_DEFAULT_BROKER_CONFIG
        assert broker_configs["broker.id"].is_read_only

    check()
    broker.restart()
    check()
    with pytest.raises(KafkaException):
        incremental(broker, ResourceType.BROKER, "1", {"broker.id": "7"})


@pytest.mark.parametrize("topic_codec", list(TOPIC_CODECS))
def test_confluent_topic_compression_type_recompresses_every_producer_codec(make_broker, backend, topic_codec):
    """A topic with compression.type=<codec> receives batches from producers of every codec; the broker
    stores them in the topic's codec (the producer's bytes when they match) and a check.crcs=true consumer
    reads every message byte for byte."""
    broker = make_broker(backend=backend)
    topic = unique_topic("codec")
    create_topic(broker, topic, 1, {"compression.type": topic_codec})
    sent = []
    for codec in CODECS:
        values = [(b"%s-%d-" % (codec.encode(), i)) + bytes(range(256)) * (i % 5) for i in range(200)]
        produce(broker, topic, [(0, b"key-%d" % i, v) for i, v in enumerate(values)],
                **{"compression.type": codec, "linger.ms": 50})
        sent += values
    got = consume(broker, topic, {0: len(sent)})
    assert [m.value() for m in got[0]] == sent
    with kafka_raw.Connection(broker.bootstrap) as connection:
        error, batches = connection.fetch_batch_headers(topic, 0)
    assert error == 0 and batches
    assert {attributes & 0x07 for _, attributes, _ in batches} == {TOPIC_CODECS[topic_codec]}


def test_confluent_log_append_time_topic_stamps_batches(make_broker, backend):
    """message.timestamp.type=LogAppendTime: consumers see the broker's append time, not the producer's."""
    broker = make_broker(backend=backend)
    topic = unique_topic("lat")
    create_topic(broker, topic, 1, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "lz4"})
    for i in range(20):
        producer.produce(topic, value=b"v%d" % i, timestamp=1_000_000_000_000 + i)
    assert producer.flush(30) == 0
    after = int(time.time() * 1000)
    got = consume(broker, topic, {0: 20})
    for msg in got[0]:
        kind, timestamp = msg.timestamp()
        assert kind == 2  # TIMESTAMP_LOG_APPEND_TIME
        assert before - 1000 <= timestamp <= after + 1000


# MARK: kafka-python 3.0

def test_kafka_python_admin_partitions_records_configs_and_log_dirs(make_broker, backend):
    """kafka-python's admin client: create_partitions, delete_records, alter_configs (topic and broker),
    describe_configs with synonyms, describe_log_dirs with the stored sizes, describe_cluster."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import ConfigResource as KConfigResource, NewPartitions as KNewPartitions, NewTopic as KNewTopic
    from kafka.structs import TopicPartition as KTopicPartition

    broker = make_broker(backend=backend)
    topic = unique_topic("kpa")
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        client.create_topics([KNewTopic(topic, num_partitions=1, replication_factor=1)])
        client.create_partitions({topic: KNewPartitions(total_count=3)})
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        for i in range(30):
            producer.send(topic, value=b"x" * 100, partition=i % 3)
        producer.flush(30)
        producer.close()
        low = client.delete_records({KTopicPartition(topic, 2): 4})
        assert low[KTopicPartition(topic, 2)]["low_watermark"] == 4

        client.alter_configs([KConfigResource("TOPIC", topic, {"retention.ms": "7200000"}),
                              KConfigResource("BROKER", "1", {"log.retention.bytes": "123456789"})])
        configs = client.describe_configs([KConfigResource("TOPIC", topic), KConfigResource("BROKER", "1")],
                                          include_synonyms=True, config_filter="all")
        assert configs["topic"][topic]["retention.ms"]["value"] == "7200000"
        assert configs["topic"][topic]["retention.bytes"]["value"] == "123456789"
        assert configs["broker"]["1"]["log.retention.bytes"]["value"] == "123456789"
        assert configs["broker"]["1"]["num.partitions"]["value"] == "1"

        dirs = client.describe_log_dirs()
        assert len(dirs) == 1 and len(dirs[0]["log_dirs"]) == 1
        log_dir = dirs[0]["log_dirs"][0]
        assert log_dir["log_dir"] == str(broker.data_dir)
        sizes = {p["partition_index"]: p["partition_size"]
                 for t in log_dir["topics"] if t["name"] == topic for p in t["partitions"]}
        assert sorted(sizes) == [0, 1, 2] and all(size >= 1000 for size in sizes.values()), sizes
        assert log_dir["total_bytes"] > 0 and 0 < log_dir["usable_bytes"] <= log_dir["total_bytes"]
        cluster = client.describe_cluster()
        assert [b["broker_id"] for b in cluster["brokers"]] == [1]
    finally:
        client.close()


def test_kafka_python_producer_reports_the_record_that_failed(make_broker, backend):
    """A batch with one record outside message.timestamp.before.max.ms: kafka-python fails that record with
    INVALID_TIMESTAMP and Kafka's message from record_errors, the others as part of the batch; the raw
    Produce v8 response names the record."""
    from kafka import KafkaProducer
    from kafka.errors import InvalidTimestampError, KafkaError as KPKafkaError

    broker = make_broker(backend=backend)
    topic = unique_topic("rec")
    create_topic(broker, topic, 1, {"message.timestamp.before.max.ms": "3600000"})
    now = int(time.time() * 1000)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=200, retries=0, acks="all")
    futures = [producer.send(topic, value=b"v%d" % i, partition=0, timestamp_ms=now - (86_400_000 if i == 1 else 0))
               for i in range(3)]
    producer.flush(30)
    producer.close()
    errors = []
    for future in futures:
        with pytest.raises(KPKafkaError) as failed:
            future.get(timeout=30)
        errors.append(failed.value)
    assert isinstance(errors[1], InvalidTimestampError)
    assert "is out of range" in str(errors[1])
    assert not isinstance(errors[0], InvalidTimestampError) and not isinstance(errors[2], InvalidTimestampError)
    with kafka_raw.Connection(broker.bootstrap) as connection:
        batch = kafka_raw.record_batch_with_timestamps([b"a", b"b", b"c"], [now, now - 86_400_000, now])
        error, record_errors, message = connection.produce_v8(topic, 0, batch)
    assert error == 32  # INVALID_TIMESTAMP
    assert [index for index, _ in record_errors] == [1]
    assert message == "One or more records have been rejected due to invalid timestamp"


def test_kafka_python_elections_reassignments_and_group_offset_deletion(make_broker, backend):
    """As a single broker answers them: preferred elections are not needed, no reassignment is in progress,
    reassigning onto this broker succeeds; OffsetDelete keeps the offsets of a topic an active group
    subscribes to and removes them once the group is empty; confluent's describe_cluster names this broker."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic as KNewTopic
    from kafka.errors import GroupSubscribedToTopicError, NoError
    from kafka.structs import TopicPartition as KTopicPartition

    broker = make_broker(backend=backend)
    topic = unique_topic("elect")
    group = unique_topic("og")
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        client.create_topics([KNewTopic(topic, num_partitions=2, replication_factor=1)])
        election = client.elect_leaders(0, {topic: [0, 1]})
        assert [p.error_code for r in election.replica_election_results for p in r.partition_result] == [84, 84]
        assert client.list_partition_reassignments() == {}
        reassigned = client.alter_partition_reassignments({KTopicPartition(topic, 0): [1]})
        assert reassigned == {KTopicPartition(topic, 0): None}, reassigned  # kafka-python: None is success

        produce(broker, topic, [(0, None, b"m")])
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                             "enable.auto.commit": False})
        consumer.subscribe([topic])
        deadline = time.monotonic() + WAIT_S
        message = None
        while message is None or message.error():
            assert time.monotonic() < deadline, "the group consumer read nothing"
            message = consumer.poll(0.5)
        consumer.commit(message=message, asynchronous=False)
        partition = KTopicPartition(topic, 0)
        assert client.delete_group_offsets(group, [partition]) == {partition: GroupSubscribedToTopicError}
        consumer.close()
        assert client.delete_group_offsets(group, [partition]) == {partition: NoError}
    finally:
        client.close()
    cluster = admin(broker).describe_cluster().result(30)
    assert [node.id for node in cluster.nodes] == [1] and cluster.controller.id == 1


# MARK: aiokafka 0.14

def test_aiokafka_admin_partitions_configs_and_records(make_broker, backend):
    """aiokafka's admin client: create_partitions, alter_configs (topic and broker), describe_configs,
    delete_records."""
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions as ANewPartitions, NewTopic as ANewTopic
    from aiokafka.admin import RecordsToDelete
    from aiokafka.admin.config_resource import ConfigResource as AConfigResource, ConfigResourceType
    from aiokafka.structs import TopicPartition as ATopicPartition

    broker = make_broker(backend=backend)
    topic = unique_topic("aio")

    async def with_client(steps):
        client = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
        await client.start()
        try:
            return await steps(client)
        finally:
            await client.close()

    async def grow_and_configure(client):
        await client.create_topics([ANewTopic(topic, num_partitions=1, replication_factor=1)])
        await client.create_partitions({topic: ANewPartitions(total_count=2)})
        await client.alter_configs([
            AConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "999999"}),
            AConfigResource(ConfigResourceType.BROKER, "1", {"log.retention.bytes": "888888888"}),
        ])

    async def describe_and_delete(client):
        responses = await client.describe_configs([AConfigResource(ConfigResourceType.TOPIC, topic),
                                                   AConfigResource(ConfigResourceType.BROKER, "1")])
        entries = {(resource[3], entry[0]): entry[1] for response in responses for resource in response.resources
                   for entry in resource[4]}
        deleted = await client.delete_records({ATopicPartition(topic, 1): RecordsToDelete(before_offset=3)})
        return entries, deleted

    asyncio.run(with_client(grow_and_configure))
    produce(broker, topic, [(1, None, b"m%d" % i) for i in range(5)])
    entries, deleted = asyncio.run(with_client(describe_and_delete))
    assert entries[(topic, "retention.ms")] == "999999"
    assert entries[(topic, "retention.bytes")] == "888888888"
    assert entries[("1", "log.retention.bytes")] == "888888888"
    assert deleted == {ATopicPartition(topic, 1): 3}
    got = consume(broker, topic, {1: 2})
    assert [m.offset() for m in got[1]] == [3, 4]
