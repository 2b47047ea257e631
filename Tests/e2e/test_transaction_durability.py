"""Transactions across kill -9 of the real fjord binary on the durable backends: a transaction
open at the crash, a commit right before it, and a crash at a random point of a stream of
transactions (during produce, between EndTxn and the markers, during marker writes). After the
restart every transaction is either completely visible to read_committed consumers or not at all,
every commit the producer saw succeed is visible, and a producer restarted with the same
transactional.id fences the old epoch."""

import json
import subprocess
import sys
import textwrap
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import durable_backends, unique_topic
from test_confluent import create_topic
from test_transactions import flat, produce_transaction, read_all, transactional_producer

DURABLE = durable_backends()
pytestmark = pytest.mark.skipif(not DURABLE, reason="no durable backend selected (FJORD_E2E_BACKENDS)")


def last_stable_offset(bootstrap, topic, partition):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "lso", "isolation.level": "read_committed"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    finally:
        consumer.close()


@pytest.mark.parametrize("backend", DURABLE)
def test_a_transaction_open_at_kill9_is_fenced_by_the_restarted_producer(make_broker, backend):
    """kill -9 while a transaction is open (its records acknowledged): after the restart the
    open transaction still holds the last stable offset; a new producer with the same
    transactional.id aborts and fences it, and only the committed transactions are visible."""
    broker = make_broker(backend)
    topic = unique_topic("txn-kill-open")
    create_topic(broker.bootstrap, topic, 3)
    transactional_id = unique_topic("tid-kill-open")
    producer = transactional_producer(broker.bootstrap, transactional_id)
    produce_transaction(producer, topic, [f"c{i}" for i in range(300)], 3)
    producer.begin_transaction()
    for i in range(300):
        producer.produce(topic, value=b"open%d" % i, partition=i % 3)
    producer.flush(30)
    broker.kill()
    broker.start()

    # 100 committed records and their marker per partition; the open transaction starts at 101.
    assert [last_stable_offset(broker.bootstrap, topic, p) for p in range(3)] == [101, 101, 101]
    assert flat(read_all(broker.bootstrap, topic, 3, "read_committed")) == sorted(f"c{i}" for i in range(300))
    restarted = transactional_producer(broker.bootstrap, transactional_id)
    produce_transaction(restarted, topic, [f"n{i}" for i in range(30)], 3)
    expected = sorted([f"c{i}" for i in range(300)] + [f"n{i}" for i in range(30)])
    assert flat(read_all(broker.bootstrap, topic, 3, "read_committed")) == expected
    assert len(flat(read_all(broker.bootstrap, topic, 3, "read_uncommitted"))) == 630


@pytest.mark.parametrize("backend", DURABLE)
def test_a_transaction_open_at_kill9_is_aborted_at_its_timeout(make_broker, backend):
    """kill -9 while a transaction is open and no producer comes back: the broker aborts it when
    its timeout (counted from its start, as recorded before the crash) passes."""
    broker = make_broker(backend)
    topic = unique_topic("txn-kill-timeout")
    create_topic(broker.bootstrap, topic, 2)
    producer = transactional_producer(broker.bootstrap, unique_topic("tid-kill-timeout"),
                                      **{"transaction.timeout.ms": 3000})
    produce_transaction(producer, topic, [f"c{i}" for i in range(10)], 2)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, value=b"open%d" % i, partition=i % 2)
    producer.flush(30)
    broker.kill()
    broker.start()
    deadline = time.monotonic() + 30
    while [last_stable_offset(broker.bootstrap, topic, p) for p in range(2)] != [12, 12]:
        assert time.monotonic() < deadline, "the open transaction was never aborted after the restart"
        time.sleep(0.2)
    assert flat(read_all(broker.bootstrap, topic, 2, "read_committed")) == sorted(f"c{i}" for i in range(10))


@pytest.mark.parametrize("backend", DURABLE)
def test_a_commit_right_before_kill9_is_complete_after_the_restart(make_broker, backend):
    """kill -9 right after commit_transaction returned (the markers are written after the commit
    is answered, so they may be missing): after the restart the transaction is completely visible
    in every partition and the group's transactional offset is committed."""
    broker = make_broker(backend)
    topic = unique_topic("txn-kill-commit")
    create_topic(broker.bootstrap, topic, 8)
    group = unique_topic("txn-kill-group")
    producer = transactional_producer(broker.bootstrap, unique_topic("tid-kill-commit"))
    producer.begin_transaction()
    for i in range(800):
        producer.produce(topic, value=b"v%d" % i, partition=i % 8)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    producer.send_offsets_to_transaction([TopicPartition(topic, 0, 42)], consumer.consumer_group_metadata(), 30)
    producer.commit_transaction(30)
    broker.kill()
    consumer.close()
    broker.start()
    assert flat(read_all(broker.bootstrap, topic, 8, "read_committed")) == sorted(f"v{i}" for i in range(800))
    reader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "isolation.level": "read_committed"})
    try:
        assert reader.committed([TopicPartition(topic, 0)], timeout=30)[0].offset == 42
    finally:
        reader.close()


STREAM_SCRIPT = textwrap.dedent("""
    import sys
    from confluent_kafka import Producer
    bootstrap, topic, transactional_id, out_path = sys.argv[1:5]
    out = open(out_path, "w", buffering=1)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 1,
                         "transaction.timeout.ms": 60000})
    producer.init_transactions(30)
    n = 0
    while True:
        producer.begin_transaction()
        for i in range(50):
            producer.produce(topic, value=("t%d-%d" % (n, i)).encode(), partition=(n + i) % 4)
        producer.commit_transaction(60)
        out.write("%d\\n" % n)
        n += 1
""")


@pytest.mark.parametrize("backend", DURABLE)
def test_kill9_at_any_point_of_a_stream_of_transactions_leaves_none_half_visible(make_broker, backend, tmp_path):
    """A producer commits 50-record transactions over 4 partitions back to back; the broker is
    killed with -9 at some point of that stream (produce, EndTxn, marker writes) and the producer
    with it. After the restart a new producer with the same transactional.id initializes (fencing
    the old epoch and aborting what was open) and commits once more: every transaction is either
    wholly visible to read_committed or not at all, and every commit the old producer saw
    succeed is visible."""
    broker = make_broker(backend)
    topic = unique_topic("txn-stream")
    create_topic(broker.bootstrap, topic, 4)
    transactional_id = unique_topic("tid-stream")
    reports = tmp_path / "committed.txt"
    script = tmp_path / "stream.py"
    script.write_text(STREAM_SCRIPT)
    producer = subprocess.Popen([sys.executable, str(script), broker.bootstrap, topic, transactional_id, str(reports)])
    try:
        deadline = time.monotonic() + 60
        while not reports.exists() or len(reports.read_text().splitlines()) < 40:
            assert producer.poll() is None, "the transactional producer died"
            assert time.monotonic() < deadline, "the transactional producer made no progress"
            time.sleep(0.01)
        broker.kill()
    finally:
        producer.kill()
        producer.wait(timeout=30)
    acknowledged = {int(line) for line in reports.read_text().splitlines() if line.strip()}
    broker.start()
    restarted = transactional_producer(broker.bootstrap, transactional_id)
    produce_transaction(restarted, topic, [f"after-{i}" for i in range(8)], 4)

    values = flat(read_all(broker.bootstrap, topic, 4, "read_committed", timeout_s=120))
    assert len(values) == len(set(values)), "a record is visible twice"
    by_transaction: dict[int, int] = {}
    for value in values:
        if value.startswith("t"):
            n = int(value[1:].split("-")[0])
            by_transaction[n] = by_transaction.get(n, 0) + 1
    half_visible = {n: count for n, count in by_transaction.items() if count != 50}
    assert half_visible == {}, f"transactions partly visible: {half_visible}"
    assert acknowledged <= set(by_transaction), f"committed but missing: {sorted(acknowledged - set(by_transaction))}"
    assert sum(1 for v in values if v.startswith("after-")) == 8
    print(json.dumps({"acknowledged": len(acknowledged), "visible": len(by_transaction)}))
