"""Issue 17: the oldest and newest versions of the group and offset APIs against the real fjord
binary. Versions no installed client sends go over a raw socket, encoded by hand from Kafka 3.8's
message definitions (non-flexible versions only); librdkafka 2.16 shows OffsetForLeaderEpoch in use,
kafka-python 3.0 DescribeTopicPartitions."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import free_port, unique_topic
from kafka_raw import Connection, array, i32, i64, record_batch, string
from test_groups import WAIT_S, VersionRecorder


def commit(conn, version: int, group: str, topic: str, offsets: dict[int, int], metadata: str = "",
           commit_timestamp: int = -1) -> dict[int, int]:
    """OffsetCommit v0 or v1 (v1: generation -1 and no member, a "simple" commit); partition → error."""
    members = b"" if version == 0 else i32(-1) + string("")
    stamp = b"" if version == 0 else i64(commit_timestamp)
    partitions = [i32(p) + i64(o) + stamp + string(metadata) for p, o in offsets.items()]
    r = conn.request(8, version, string(group) + members + array([string(topic) + array(partitions)]))
    assert r.i32() == 1 and r.string() == topic
    return {r.i32(): r.i16() for _ in range(r.i32())}


def fetch_offsets(conn, version: int, group: str, topic: str, partitions: list[int]) -> dict[int, tuple]:
    """OffsetFetch v0 or v1: partition → (offset, metadata, error)."""
    r = conn.request(9, version, string(group) + array([string(topic) + array([i32(p) for p in partitions])]))
    assert r.i32() == 1 and r.string() == topic
    answers = {}
    for _ in range(r.i32()):
        partition, offset, metadata, error = r.i32(), r.i64(), r.string(), r.i16()
        answers[partition] = (offset, metadata, error)
    return answers


def old_style_offsets(conn, topic: str, timestamp: int, max_num_offsets: int) -> tuple[int, list[int]]:
    """ListOffsets v0: (error, offsets)."""
    body = i32(-1) + array([string(topic) + array([i32(0) + i64(timestamp) + i32(max_num_offsets)])])
    r = conn.request(2, 0, body)
    assert r.i32() == 1 and r.string() == topic and r.i32() == 1
    assert r.i32() == 0
    error = r.i16()
    return error, [r.i64() for _ in range(r.i32())]


def epoch_end_offset(conn, topic: str, epoch: int, current_epoch: int = -1) -> tuple[int, int, int]:
    """OffsetForLeaderEpoch v3 (the newest non-flexible one): (error, leader epoch, end offset)."""
    body = i32(-1) + array([string(topic) + array([i32(0) + i32(current_epoch) + i32(epoch)])])
    r = conn.request(23, 3, body)
    r.i32()  # throttle
    assert r.i32() == 1 and r.string() == topic and r.i32() == 1
    error, partition, leader_epoch, end_offset = r.i16(), r.i32(), r.i32(), r.i64()
    assert partition == 0
    return error, leader_epoch, end_offset


def produce(conn, topic: str, count: int):
    conn.metadata([topic])  # auto-creates the topic
    error, _, _ = conn.produce(topic, 0, record_batch([b"m%d" % i for i in range(count)]))
    assert error == 0


def test_offset_commit_and_fetch_v0_v1_over_a_raw_socket(broker):
    """OffsetCommit v0/v1 and OffsetFetch v0/v1 (Sarama-era clients) commit and read back through
    the coordinator, for a group no member joined."""
    topic, group = unique_topic("old"), unique_topic("g")
    with Connection(broker.bootstrap) as conn:
        produce(conn, topic, 3)
        assert commit(conn, 0, group, topic, {0: 2}, metadata="zero") == {0: 0}
        for version in (0, 1):
            assert fetch_offsets(conn, version, group, topic, [0]) == {0: (2, "zero", 0)}
        assert commit(conn, 1, group, topic, {0: 3}, metadata="one", commit_timestamp=int(time.time() * 1000)) == {0: 0}
        assert fetch_offsets(conn, 0, group, topic, [0]) == {0: (3, "one", 0)}
        assert fetch_offsets(conn, 0, unique_topic("nobody"), topic, [0]) == {0: (-1, "", 0)}


def test_list_offsets_v0_and_offset_for_leader_epoch_over_a_raw_socket(broker):
    """ListOffsets v0 answers old-style offset lists; OffsetForLeaderEpoch ends epoch 0 at the log end."""
    topic = unique_topic("v0")
    with Connection(broker.bootstrap) as conn:
        produce(conn, topic, 4)
        assert old_style_offsets(conn, topic, -1, 1) == (0, [4])
        assert old_style_offsets(conn, topic, -1, 10) == (0, [4, 0])
        assert old_style_offsets(conn, topic, -2, 10) == (0, [0])
        assert epoch_end_offset(conn, topic, 0) == (0, 0, 4)
        assert epoch_end_offset(conn, topic, 0, current_epoch=0) == (0, 0, 4)
        assert epoch_end_offset(conn, topic, 7) == (0, -1, -1)
        assert epoch_end_offset(conn, topic, 0, current_epoch=2)[0] == 75  # UNKNOWN_LEADER_EPOCH


def test_confluent_consumer_validates_its_committed_position(make_broker):
    """librdkafka 2.16 commits an offset with its leader epoch (OffsetCommit), reads it back with
    the epoch (OffsetFetch), and validates a position assigned with that epoch through
    OffsetForLeaderEpoch before fetching from it; it consumes exactly the rest."""
    proxy_port = free_port()
    broker = make_broker(extra_args=["--advertised-listener", f"127.0.0.1:{proxy_port}"])
    recorder = VersionRecorder(broker.port, proxy_port)
    bootstrap = f"127.0.0.1:{proxy_port}"
    topic, group = unique_topic("ofle"), unique_topic("g")
    try:
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for i in range(10):
            producer.produce(topic, b"v%d" % i)
        assert producer.flush(30) == 0

        def consumer():
            return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                             "enable.auto.commit": False, "session.timeout.ms": 6000})

        first = consumer()
        first.assign([TopicPartition(topic, 0, 0)])
        got, deadline = [], time.monotonic() + WAIT_S
        while len(got) < 6:
            assert time.monotonic() < deadline
            message = first.poll(0.2)
            if message is not None and message.error() is None:
                got.append(message)
        # The commit carries the leader epoch of the last consumed message (KIP-320).
        first.commit(offsets=[TopicPartition(topic, 0, got[5].offset() + 1, leader_epoch=got[5].leader_epoch())],
                     asynchronous=False)
        first.close()
        assert got[5].leader_epoch() == 0

        recorder.seen.clear()
        second = consumer()
        # A position with a leader epoch (here the committed one, as an application that stores
        # its offsets would restore it) is validated before it is fetched from.
        committed = second.committed([TopicPartition(topic, 0)], timeout=30)[0]
        assert (committed.offset, committed.leader_epoch) == (6, 0)
        second.assign([committed])
        rest, deadline = [], time.monotonic() + WAIT_S
        while len(rest) < 4:
            assert time.monotonic() < deadline
            message = second.poll(0.2)
            if message is not None and message.error() is None:
                rest.append(message.value())
        second.close()
        assert rest == [b"v6", b"v7", b"v8", b"v9"]
        used = sorted(v for k, v in recorder.seen if k == 23)
        print(f"librdkafka 2.16 OffsetForLeaderEpoch versions: {used}")
        assert used, f"no OffsetForLeaderEpoch request among {sorted(recorder.seen)}"
    finally:
        recorder.stop()


def test_kafka_python_describes_topic_partitions_page_by_page(broker):
    """kafka-python 3.0's describe_topic_partitions (DescribeTopicPartitions v0, KIP-966) pages
    through a topic with the cursor the broker answers, and reports unknown topics."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic as KafkaNewTopic

    topic = unique_topic("dtp")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([KafkaNewTopic(topic, 5, 1)])
        seen, cursor, pages = [], None, 0
        while True:
            page = admin.describe_topic_partitions([topic], response_partition_limit=2, cursor=cursor)
            pages += 1
            (described,) = page["topics"]
            assert described["error_code"] == 0 and described["name"] == topic
            seen += [p["partition_index"] for p in described["partitions"]]
            assert all(p["isr_nodes"] == [p["leader_id"]] for p in described["partitions"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert cursor["topic_name"] == topic
        assert (seen, pages) == ([0, 1, 2, 3, 4], 3)
        unknown = admin.describe_topic_partitions([unique_topic("missing")])
        assert unknown["topics"][0]["error_code"] == 3  # UNKNOWN_TOPIC_OR_PARTITION
    finally:
        admin.close()
