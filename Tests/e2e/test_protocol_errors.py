"""Bad input over a raw socket: each gets Kafka's behaviour (an error response or a closed
connection, never a hang or a crash), and real clients keep working afterwards."""

import struct

import pytest
from confluent_kafka import Producer

from conftest import unique_topic
from kafka_raw import Connection, i16, i32, request_frame, string


def assert_broker_serves(broker):
    """A real client can still produce after the abuse."""
    topic = unique_topic("after-abuse")
    delivered = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    producer.produce(topic, b"still alive", on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(30) == 0
    assert delivered == [None]
    assert broker.is_running()


def test_garbage_bytes_close_the_connection(broker):
    """Random bytes decode as an absurd length prefix: the broker closes the connection."""
    with Connection(broker.bootstrap) as conn:
        conn.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.is_closed_by_peer()
    assert_broker_serves(broker)


@pytest.mark.parametrize("size", [-1, -2147483648, 0, 104857601, 2147483647])
def test_bad_length_prefix_closes_the_connection(broker, size):
    """Negative, zero and oversized (> 100 MiB) size prefixes close the connection before any body is read."""
    with Connection(broker.bootstrap) as conn:
        conn.send_raw(struct.pack(">i", size))
        assert conn.is_closed_by_peer()
    assert_broker_serves(broker)


def test_unknown_api_key_closes_the_connection(broker):
    """An API key Kafka does not define cannot be answered: the connection is closed."""
    with Connection(broker.bootstrap) as conn:
        conn.send_raw(request_frame(9999, 0, 7, b""))
        assert conn.is_closed_by_peer()
    assert_broker_serves(broker)


def test_unadvertised_api_closes_the_connection(broker):
    """A known API Fjord does not advertise (ControlledShutdown, key 7) closes the connection."""
    with Connection(broker.bootstrap) as conn:
        conn.send_raw(request_frame(7, 1, 7, i32(1) + i32(1)))
        assert conn.is_closed_by_peer()
    assert_broker_serves(broker)


def test_unsupported_metadata_version_closes_the_connection(broker):
    """Metadata v99 cannot be parsed: the connection is closed (Kafka's behaviour)."""
    with Connection(broker.bootstrap) as conn:
        conn.send_raw(request_frame(3, 99, 7, i32(-1)))
        assert conn.is_closed_by_peer()
    assert_broker_serves(broker)


def test_unsupported_api_versions_version_gets_a_v0_error_response(broker):
    """ApiVersions v99 is answered with a v0 body: UNSUPPORTED_VERSION (35) and the supported range."""
    with Connection(broker.bootstrap) as conn:
        conn.send_raw(request_frame(18, 99, 42, b"\x00\x00"))
        frame = conn.recv_frame()
        correlation_id, error, count = struct.unpack_from(">ihi", frame)
        assert correlation_id == 42
        assert error == 35
        assert count == 1
        key, lo, hi = struct.unpack_from(">hhh", frame, 10)
        assert (key, lo, hi) == (18, 0, 3)
        # The connection stays usable: a supported ApiVersions now succeeds.
        error, keys = conn.api_versions(version=0)
        assert error == 0 and 0 in keys and 1 in keys


def test_truncated_body_closes_the_connection(broker):
    """A Produce whose body ends mid-field is malformed: the connection is closed, nothing is stored."""
    topic = unique_topic("truncated")
    with Connection(broker.bootstrap) as conn:
        body = string(None) + i16(-1) + i32(1000) + i32(1) + string(topic)  # partitions array missing
        conn.send_raw(request_frame(0, 3, 5, body))
        assert conn.is_closed_by_peer()
    assert_broker_serves(broker)


def test_pipelined_requests_are_answered_in_order(broker):
    """Ten ApiVersions requests written at once come back in request order."""
    with Connection(broker.bootstrap) as conn:
        conn.send_raw(b"".join(request_frame(18, 0, cid, b"") for cid in range(100, 110)))
        ids = [struct.unpack_from(">i", conn.recv_frame())[0] for _ in range(10)]
        assert ids == list(range(100, 110))


def test_frame_split_across_writes_is_reassembled(broker):
    """A request delivered a byte at a time is still answered."""
    with Connection(broker.bootstrap) as conn:
        for byte in request_frame(18, 0, 77, b""):
            conn.send_raw(bytes([byte]))
        assert struct.unpack_from(">i", conn.recv_frame())[0] == 77
