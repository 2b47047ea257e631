"""Idempotent producing over the raw protocol: a retried batch is answered with its original
offset and stored once; a gap in sequence numbers is refused."""

from conftest import unique_topic
from kafka_raw import Connection, record_batch

OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
CORRUPT_MESSAGE = 2
INVALID_RECORD = 87


def create(conn, topic):
    result = conn.metadata([topic])  # auto-creates with one partition
    assert result[topic][0] == 0


def test_duplicate_batch_is_not_stored_twice(broker):
    """The same idempotent batch sent twice gets the same base offset; the log grows once."""
    topic = unique_topic("dup")
    with Connection(broker.bootstrap) as conn:
        create(conn, topic)
        error, producer_id, epoch = conn.init_producer_id()
        assert error == 0 and producer_id >= 0 and epoch == 0
        first = record_batch([b"a", b"b", b"c"], producer_id=producer_id, producer_epoch=epoch, base_sequence=0)
        assert conn.produce(topic, 0, first)[:2] == (0, 0)
        assert conn.list_offset(topic, 0, -1) == (0, -1, 3)
        # A retry of the same batch: success with the original offset, nothing appended.
        assert conn.produce(topic, 0, first)[:2] == (0, 0)
        assert conn.list_offset(topic, 0, -1) == (0, -1, 3)
        # The next batch in sequence is appended after it.
        second = record_batch([b"d"], producer_id=producer_id, producer_epoch=epoch, base_sequence=3)
        assert conn.produce(topic, 0, second)[:2] == (0, 3)
        # Retrying the older batch once more is still recognized.
        assert conn.produce(topic, 0, first)[:2] == (0, 0)
        assert conn.list_offset(topic, 0, -1) == (0, -1, 4)


def test_sequence_gap_is_out_of_order(broker):
    """A batch that skips sequence numbers is refused with OUT_OF_ORDER_SEQUENCE_NUMBER and not stored."""
    topic = unique_topic("gap")
    with Connection(broker.bootstrap) as conn:
        create(conn, topic)
        _, producer_id, epoch = conn.init_producer_id()
        assert conn.produce(topic, 0, record_batch([b"a"], producer_id=producer_id, producer_epoch=epoch, base_sequence=0))[0] == 0
        gap = record_batch([b"z"], producer_id=producer_id, producer_epoch=epoch, base_sequence=5)
        assert conn.produce(topic, 0, gap)[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert conn.list_offset(topic, 0, -1) == (0, -1, 1)


def test_older_epoch_is_fenced(broker):
    """After a producer moves to a newer epoch, batches of the older epoch are refused."""
    topic = unique_topic("epoch")
    with Connection(broker.bootstrap) as conn:
        create(conn, topic)
        _, producer_id, _ = conn.init_producer_id()
        assert conn.produce(topic, 0, record_batch([b"a"], producer_id=producer_id, producer_epoch=1, base_sequence=0))[0] == 0
        stale = record_batch([b"b"], producer_id=producer_id, producer_epoch=0, base_sequence=1)
        assert conn.produce(topic, 0, stale)[0] == INVALID_PRODUCER_EPOCH


def test_corrupt_batch_is_refused_and_not_stored(broker):
    """A batch whose CRC does not match gets CORRUPT_MESSAGE; a bad record count gets INVALID_RECORD."""
    topic = unique_topic("corrupt")
    with Connection(broker.bootstrap) as conn:
        create(conn, topic)
        batch = bytearray(record_batch([b"hello"]))
        batch[-1] ^= 0xFF
        assert conn.produce(topic, 0, bytes(batch))[0] == CORRUPT_MESSAGE
        assert conn.list_offset(topic, 0, -1) == (0, -1, 0)
        # The connection is still usable, and a valid batch goes through.
        assert conn.produce(topic, 0, record_batch([b"ok"]))[:2] == (0, 0)
