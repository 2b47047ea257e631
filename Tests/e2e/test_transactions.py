"""Transactions (KIP-98) against the real fjord binary, on every backend: confluent-kafka's
transactional producer with read_committed and read_uncommitted consumers, a consume-transform-
produce loop with send_offsets_to_transaction, fencing, the broker's timeout abort, and the
transactional producers of kafka-python and aiokafka."""

import asyncio
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from conftest import unique_topic
from test_confluent import create_topic


@pytest.fixture
def broker(broker_on_each_backend):
    """This module's tests run against every backend."""
    return broker_on_each_backend


def read_all(bootstrap, topic, partitions, isolation, timeout_s=60, extra=None):
    """Every message of `partitions` from offset 0 to the end a consumer of `isolation` sees
    (the high watermark, or the last stable offset for read_committed): {partition: [values]}."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "e2e-txn-reader",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": isolation,
        "check.crcs": True,
        **(extra or {}),
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = {p: [] for p in range(partitions)}
    at_end = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(at_end) < partitions:
            assert time.monotonic() < deadline, f"{isolation} reader did not reach the end: {sorted(at_end)}"
            for msg in consumer.consume(num_messages=10000, timeout=0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                        continue
                    raise KafkaException(msg.error())
                at_end.discard(msg.partition())
                got[msg.partition()].append(msg.value().decode())
    finally:
        consumer.close()
    return got


def flat(per_partition):
    return sorted(v for values in per_partition.values() for v in values)


def transactional_producer(bootstrap, transactional_id, **extra):
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 5, **extra})
    producer.init_transactions(30)
    return producer


def produce_transaction(producer, topic, values, partitions, commit=True):
    producer.begin_transaction()
    for i, value in enumerate(values):
        producer.produce(topic, value=value.encode(), partition=i % partitions)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.flush(30)
        producer.abort_transaction(30)


def test_committed_and_aborted_transactions_with_both_isolation_levels(broker):
    """Committed transactions are seen by read_committed and read_uncommitted consumers alike; an
    aborted one only by read_uncommitted; markers take offsets but are never delivered; ListOffsets
    latest for read_committed equals the high watermark once nothing is open."""
    topic = unique_topic("txn-basic")
    create_topic(broker.bootstrap, topic, 3)
    producer = transactional_producer(broker.bootstrap, unique_topic("tid"))
    committed_a = [f"a{i}" for i in range(300)]
    aborted_b = [f"b{i}" for i in range(300)]
    committed_c = [f"c{i}" for i in range(30)]
    produce_transaction(producer, topic, committed_a, 3)
    produce_transaction(producer, topic, aborted_b, 3, commit=False)
    produce_transaction(producer, topic, committed_c, 3)

    assert flat(read_all(broker.bootstrap, topic, 3, "read_committed")) == sorted(committed_a + committed_c)
    assert flat(read_all(broker.bootstrap, topic, 3, "read_uncommitted")) == sorted(committed_a + aborted_b + committed_c)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm", "isolation.level": "read_committed"})
    try:
        for p in range(3):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            # 100 + 100 + 10 records and three markers per partition.
            assert (low, high) == (0, 213)
    finally:
        consumer.close()


def test_read_committed_stops_at_an_open_transaction_until_it_commits(broker):
    """While a transaction is open, read_committed consumers get nothing from its first offset on
    (not even later committed data of another producer) and their end (LSO) stays there;
    read_uncommitted consumers see it all; after the commit read_committed sees everything."""
    topic = unique_topic("txn-open")
    create_topic(broker.bootstrap, topic, 1)
    first = transactional_producer(broker.bootstrap, unique_topic("tid-1"))
    second = transactional_producer(broker.bootstrap, unique_topic("tid-2"))
    first.begin_transaction()
    for i in range(50):
        first.produce(topic, value=b"open%d" % i, partition=0)
    first.flush(30)
    produce_transaction(second, topic, [f"later{i}" for i in range(20)], 1)

    assert read_all(broker.bootstrap, topic, 1, "read_committed")[0] == []
    assert len(read_all(broker.bootstrap, topic, 1, "read_uncommitted")[0]) == 70
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "lso", "isolation.level": "read_committed"})
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 0)
        first.commit_transaction(30)
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 72)
    finally:
        consumer.close()
    got = read_all(broker.bootstrap, topic, 1, "read_committed")[0]
    assert sorted(got) == sorted([f"open{i}" for i in range(50)] + [f"later{i}" for i in range(20)])


def test_consume_transform_produce_20000_messages_exactly_once(broker):
    """A consume-transform-produce loop over 20,000 messages (read_committed consumer in a group,
    transactional producer, send_offsets_to_transaction, ~1,000 messages per transaction): one
    transaction is aborted and redone from the committed offsets, and half way both clients are
    replaced by new ones with the same group and transactional id, which resume from the committed
    offsets. The output holds every input exactly once for read_committed readers."""
    source = unique_topic("ctp-in")
    sink = unique_topic("ctp-out")
    create_topic(broker.bootstrap, source, 4)
    create_topic(broker.bootstrap, sink, 4)
    feeder = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 5})
    total = 20_000
    for i in range(total):
        feeder.produce(source, value=b"%d" % i, partition=i % 4)
        if i % 5000 == 0:
            feeder.poll(0)
    assert feeder.flush(60) == 0
    group = unique_topic("ctp-group")
    transactional_id = unique_topic("ctp-tid")

    def clients():
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False,
                             "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
        consumer.subscribe([source])
        return consumer, transactional_producer(broker.bootstrap, transactional_id)

    def committed_total(consumer):
        offsets = consumer.committed([TopicPartition(source, p) for p in range(4)], timeout=30)
        return sum(max(tp.offset, 0) for tp in offsets)

    consumer, producer = clients()
    transactions, aborted, replaced = 0, False, False
    deadline = time.monotonic() + 300
    while committed_total(consumer) < total:
        assert time.monotonic() < deadline, "the loop made no progress"
        batch = [m for m in consumer.consume(num_messages=1000, timeout=1.0) if m.error() is None]
        if not batch:
            continue
        producer.begin_transaction()
        for msg in batch:
            producer.produce(sink, value=b"out-" + msg.value(), partition=msg.partition())
        producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                             consumer.consumer_group_metadata(), 30)
        transactions += 1
        if transactions == 5 and not aborted:
            aborted = True
            producer.flush(30)  # so the aborted records reach the log (abort would purge them)
            producer.abort_transaction(30)
            # Redo from the committed offsets: what this transaction read is read again.
            for tp in consumer.committed(consumer.assignment(), timeout=30):
                consumer.seek(TopicPartition(source, tp.partition, max(tp.offset, 0)))
            continue
        producer.commit_transaction(30)
        if not replaced and committed_total(consumer) >= total // 2:
            replaced = True
            consumer.close()
            consumer, producer = clients()
    consumer.close()
    assert aborted and replaced

    out = flat(read_all(broker.bootstrap, sink, 4, "read_committed", timeout_s=120))
    assert len(out) == total
    assert out == sorted(f"out-{i}" for i in range(total))
    everything = flat(read_all(broker.bootstrap, sink, 4, "read_uncommitted", timeout_s=120))
    assert len(everything) > total, "the aborted transaction's records are in the log"


def test_a_second_producer_with_the_same_id_fences_the_first(broker):
    """A new producer with the same transactional.id aborts the first one's open transaction and
    fences it: the first one's commit fails, none of its records are visible to read_committed,
    and the new producer's transaction commits."""
    topic = unique_topic("txn-fence")
    create_topic(broker.bootstrap, topic, 2)
    transactional_id = unique_topic("tid-fence")
    zombie = transactional_producer(broker.bootstrap, transactional_id)
    zombie.begin_transaction()
    for i in range(40):
        zombie.produce(topic, value=b"zombie%d" % i, partition=i % 2)
    zombie.flush(30)
    successor = transactional_producer(broker.bootstrap, transactional_id)
    produce_transaction(successor, topic, [f"new{i}" for i in range(40)], 2)
    zombie.produce(topic, value=b"zombie-late", partition=0)
    with pytest.raises(KafkaException) as failure:
        zombie.commit_transaction(30)
    assert failure.value.args[0].fatal() or failure.value.args[0].txn_requires_abort()
    assert flat(read_all(broker.bootstrap, topic, 2, "read_committed")) == sorted(f"new{i}" for i in range(40))


def test_a_transaction_left_open_is_aborted_when_its_timeout_passes(broker):
    """A transaction that is neither committed nor aborted within transaction.timeout.ms is aborted
    by the broker (epoch bumped): read_committed consumers then read past it without seeing it,
    and the producer can no longer commit it."""
    topic = unique_topic("txn-timeout")
    create_topic(broker.bootstrap, topic, 1)
    producer = transactional_producer(broker.bootstrap, unique_topic("tid-timeout"), **{"transaction.timeout.ms": 2000})
    produce_transaction(producer, topic, ["before"], 1)
    producer.begin_transaction()
    producer.produce(topic, value=b"abandoned", partition=0)
    producer.flush(30)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "to", "isolation.level": "read_committed"})
    try:
        deadline = time.monotonic() + 30
        while consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1] < 4:
            assert time.monotonic() < deadline, "the broker never aborted the timed-out transaction"
            time.sleep(0.2)
    finally:
        consumer.close()
    assert read_all(broker.bootstrap, topic, 1, "read_committed")[0] == ["before"]
    with pytest.raises(KafkaException):
        producer.commit_transaction(10)


def test_kafka_python_transactional_producer_commit_and_abort(broker):
    """kafka-python's transactional producer: a committed and an aborted transaction; its
    read_committed consumer sees only the committed one, its read_uncommitted consumer both."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KPTopicPartition

    topic = unique_topic("txn-kp")
    create_topic(broker.bootstrap, topic, 2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=unique_topic("tid-kp"))
    producer.init_transactions()
    producer.begin_transaction()
    for i in range(100):
        producer.send(topic, value=b"kp-commit%d" % i, partition=i % 2)
    producer.commit_transaction()
    producer.begin_transaction()
    for i in range(100):
        producer.send(topic, value=b"kp-abort%d" % i, partition=i % 2)
    producer.flush()
    producer.abort_transaction()
    producer.close()

    def consume(isolation, expected):
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level=isolation,
                                 enable_auto_commit=False, consumer_timeout_ms=3000)
        consumer.assign([KPTopicPartition(topic, p) for p in range(2)])
        consumer.seek_to_beginning()
        values = []
        deadline = time.monotonic() + 30
        while len(values) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values += [r.value.decode() for r in records]
        consumer.close()
        return sorted(values)

    assert consume("read_committed", 100) == sorted(f"kp-commit{i}" for i in range(100))
    assert len(consume("read_uncommitted", 200)) == 200
    assert flat(read_all(broker.bootstrap, topic, 2, "read_committed")) == sorted(f"kp-commit{i}" for i in range(100))


def test_aiokafka_transactional_producer_with_offsets(broker):
    """aiokafka's transactional producer: a committed transaction with send_offsets_to_transaction
    (the group's offset becomes visible only with the commit), an aborted one (its offsets are
    discarded); aiokafka's read_committed consumer sees only the committed records."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import OffsetAndMetadata
    from aiokafka.structs import TopicPartition as AIOTopicPartition

    topic = unique_topic("txn-aio")
    create_topic(broker.bootstrap, topic, 2)
    group = unique_topic("aio-group")

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=unique_topic("tid-aio"))
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(50):
                    await producer.send(topic, value=b"aio-commit%d" % i, partition=i % 2)
                await producer.send_offsets_to_transaction({AIOTopicPartition(topic, 0): OffsetAndMetadata(7, "")}, group)
            await producer.begin_transaction()
            for i in range(50):
                await producer.send(topic, value=b"aio-abort%d" % i, partition=i % 2)
            await producer.send_offsets_to_transaction({AIOTopicPartition(topic, 0): OffsetAndMetadata(99, "")}, group)
            await producer.abort_transaction()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_committed",
                                    enable_auto_commit=False, group_id=group, auto_offset_reset="earliest")
        await consumer.start()
        try:
            committed = await consumer.committed(AIOTopicPartition(topic, 0))
            consumer.assign([AIOTopicPartition(topic, p) for p in range(2)])
            await consumer.seek_to_beginning()
            values = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                if not batches and len(values) >= 50:
                    break
                for records in batches.values():
                    values += [r.value.decode() for r in records]
        finally:
            await consumer.stop()
        return committed, sorted(values)

    committed, values = asyncio.run(run())
    assert committed == 7
    assert values == sorted(f"aio-commit{i}" for i in range(50))
