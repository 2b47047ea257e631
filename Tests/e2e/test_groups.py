"""Consumer groups and committed offsets with real clients against the real fjord binary:
confluent-kafka (librdkafka 2.16), kafka-python 3, aiokafka, kcat (librdkafka 2.0.2).

The exactly-once checks follow what a group consumer promises: every message is consumed, and a
message is consumed again only if the commit that covered it failed (or never happened before
its consumer died) — "nothing lost, nothing repeated beyond the last commit".
"""

import asyncio
import collections
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import backends, free_port, unique_topic

SESSION_TIMEOUT_MS = 6000
WAIT_S = 90
KCAT = shutil.which("kcat")


def create_topic(bootstrap: str, topic: str, partitions: int):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(30)


def produce(bootstrap: str, topic: str, partitions: int, per_partition: int, start: int = 0):
    """per_partition messages to each partition, values "p<partition>-<n>"; returns when acked."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for n in range(start, start + per_partition):
        for p in range(partitions):
            producer.produce(topic, value=f"p{p}-{n}".encode(), partition=p)
    assert producer.flush(30) == 0


def confluent_consumer(bootstrap: str, group: str, **extra) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": 500,
        **extra,
    })


def partitions_of(consumer: Consumer) -> set[int]:
    return {tp.partition for tp in consumer.assignment()}


class Ledger:
    """What a set of consumers consumed, and which of those messages a commit covered."""

    def __init__(self):
        self.seen = collections.Counter()  # (partition, offset) -> times consumed
        self.uncommitted = set()  # consumed, but the commit covering it failed
        self.by_consumer = collections.defaultdict(set)  # consumer index -> partitions it consumed

    def consume(self, index: int, partition: int, offset: int):
        self.seen[(partition, offset)] += 1
        self.by_consumer[index].add(partition)

    def check_exactly_once(self, expected: dict[int, range]):
        """Every expected message consumed; a message consumed twice only if its commit failed."""
        missing = [(p, o) for p, offsets in expected.items() for o in offsets if self.seen[(p, o)] == 0]
        assert not missing, f"{len(missing)} messages never consumed, e.g. {missing[:5]}"
        repeated = [key for key, count in self.seen.items() if count > 1 and key not in self.uncommitted]
        assert not repeated, f"consumed again after a successful commit: {sorted(repeated)[:10]}"
        extra = [key for key in self.seen if key[0] not in expected or key[1] not in expected[key[0]]]
        assert not extra, f"unexpected messages: {extra[:5]}"


def poll_confluent(consumers: dict[int, Consumer], ledger: Ledger, until, what: str, timeout_s: float = WAIT_S):
    """Polls every consumer in turn, committing each message synchronously, until until() holds."""
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: " + ", ".join(
            f"consumer {i}: {sorted(partitions_of(c))}" for i, c in consumers.items())
        for index, consumer in consumers.items():
            msg = consumer.poll(0.05)
            if msg is None:
                continue
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                continue
            ledger.consume(index, msg.partition(), msg.offset())
            try:
                consumer.commit(message=msg, asynchronous=False)
            except KafkaException as error:
                # A rebalance took the partition away before the commit: the next owner reads it again.
                print(f"consumer {index}: commit of {msg.partition()}@{msg.offset()} failed: {error}")
                ledger.uncommitted.add((msg.partition(), msg.offset()))


def covers(assignments: list[set[int]], partition_count: int) -> bool:
    """Every partition assigned to exactly one member, and every member has at least one."""
    return (set().union(*assignments) == set(range(partition_count))
            and sum(len(a) for a in assignments) == partition_count and all(assignments))


def balanced(consumers, partition_count: int) -> bool:
    return covers([partitions_of(c) for c in consumers], partition_count)


def consumed(ledger: Ledger, partitions: int, end: int, start: int = 0) -> bool:
    return all(ledger.seen[(p, o)] > 0 for p in range(partitions) for o in range(start, end))


# MARK: confluent-kafka


def test_confluent_three_consumers_share_six_partitions_and_rebalance(broker):
    """3 confluent consumers on a 6-partition topic hold every partition exactly once (2 each); a 4th
    joining and then one closing rebalance the group, and all messages are consumed exactly once."""
    topic, group = unique_topic("grp6"), unique_topic("g")
    create_topic(broker.bootstrap, topic, 6)
    consumers = {i: confluent_consumer(broker.bootstrap, group) for i in range(3)}
    for consumer in consumers.values():
        consumer.subscribe([topic])
    ledger = Ledger()
    try:
        poll_confluent(consumers, ledger, lambda: balanced(consumers.values(), 6), "3 consumers to share 6 partitions")
        assert sorted(len(partitions_of(c)) for c in consumers.values()) == [2, 2, 2]

        produce(broker.bootstrap, topic, 6, 50)
        poll_confluent(consumers, ledger, lambda: consumed(ledger, 6, 50), "the first 300 messages")
        for index, consumer in consumers.items():
            assert ledger.by_consumer[index] <= partitions_of(consumer), "consumed a partition it was not assigned"

        consumers[3] = confluent_consumer(broker.bootstrap, group)
        consumers[3].subscribe([topic])
        poll_confluent(consumers, ledger, lambda: balanced(consumers.values(), 6), "a rebalance onto 4 consumers")
        produce(broker.bootstrap, topic, 6, 50, start=50)
        poll_confluent(consumers, ledger, lambda: consumed(ledger, 6, 100), "messages 50-99")

        consumers.pop(0).close()  # LeaveGroup
        poll_confluent(consumers, ledger, lambda: balanced(consumers.values(), 6), "a rebalance onto 3 consumers")
        produce(broker.bootstrap, topic, 6, 50, start=100)
        poll_confluent(consumers, ledger, lambda: consumed(ledger, 6, 150), "messages 100-149")
        ledger.check_exactly_once({p: range(150) for p in range(6)})
    finally:
        for consumer in consumers.values():
            consumer.close()


KILLED_CONSUMER = r"""
import json, sys, time
from confluent_kafka import Consumer
bootstrap, topic, group, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "session.timeout.ms": %d, "heartbeat.interval.ms": 500})
consumer.subscribe([topic])
assignment, done = None, set()
while True:
    msg = consumer.poll(0.05)
    current = sorted(tp.partition for tp in consumer.assignment())
    if current != assignment:
        assignment = current
        print(json.dumps({"assignment": current}), flush=True)
    if msg is None or msg.error():
        continue
    # Consume and commit the first `limit` messages of each partition, then nothing more.
    if msg.offset() < limit:
        consumer.commit(message=msg, asynchronous=False)
        print(json.dumps({"committed": [msg.partition(), msg.offset() + 1]}), flush=True)
        if msg.offset() + 1 == limit:
            done.add(msg.partition())
            if done >= set(assignment):
                print(json.dumps({"done": sorted(done)}), flush=True)
""" % SESSION_TIMEOUT_MS


class ChildConsumer:
    """A confluent consumer in a subprocess, reporting JSON lines on stdout."""

    def __init__(self, bootstrap, topic, group, limit):
        self.proc = subprocess.Popen([sys.executable, "-c", KILLED_CONSUMER, bootstrap, topic, group, str(limit)],
                                     stdout=subprocess.PIPE, text=True)
        self.assignment: set[int] = set()
        self.committed: dict[int, int] = {}
        self.done = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            event = json.loads(line)
            if "assignment" in event:
                self.assignment = set(event["assignment"])
            elif "committed" in event:
                partition, offset = event["committed"]
                self.committed[partition] = offset
            elif "done" in event:
                self.done = True

    def kill(self):
        """SIGKILL by PID: the consumer vanishes without LeaveGroup."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def test_confluent_killed_consumer_is_evicted_after_its_session_timeout(broker):
    """A consumer killed with SIGKILL is evicted after its 6 s session timeout; its partitions move
    to the others, which resume exactly at its last commits: nothing lost, nothing repeated."""
    topic, group = unique_topic("kill"), unique_topic("g")
    create_topic(broker.bootstrap, topic, 6)
    child = ChildConsumer(broker.bootstrap, topic, group, limit=10)
    consumers = {i: confluent_consumer(broker.bootstrap, group) for i in range(2)}
    for consumer in consumers.values():
        consumer.subscribe([topic])
    ledger = Ledger()
    try:
        poll_confluent(consumers, ledger,
                       lambda: covers([child.assignment, *map(partitions_of, consumers.values())], 6),
                       "3 consumers (one in a subprocess) to share 6 partitions")
        killed_partitions = set(child.assignment)
        produce(broker.bootstrap, topic, 6, 40)
        own = {p for c in consumers.values() for p in partitions_of(c)}
        poll_confluent(consumers, ledger, lambda: child.done and all(ledger.seen[(p, 39)] for p in own),
                       "the survivors to consume their partitions and the child its first 10 of each")
        assert child.committed == {p: 10 for p in killed_partitions}

        child.kill()
        killed_at = time.monotonic()
        poll_confluent(consumers, ledger, lambda: balanced(consumers.values(), 6),
                       "the killed consumer's eviction and a rebalance onto 2 consumers")
        print(f"rebalanced onto the survivors {time.monotonic() - killed_at:.1f} s after SIGKILL "
              f"(session timeout {SESSION_TIMEOUT_MS} ms)")
        poll_confluent(consumers, ledger, lambda: all(ledger.seen[(p, 39)] for p in killed_partitions),
                       "the killed consumer's partitions to be consumed")
        # The survivors resumed each killed partition at the child's commit.
        for p in killed_partitions:
            assert min(o for (q, o) in ledger.seen if q == p) == 10
        ledger.check_exactly_once({p: (range(10, 40) if p in killed_partitions else range(40)) for p in range(6)})
    finally:
        child.kill()
        for consumer in consumers.values():
            consumer.close()


def test_confluent_static_member_restarts_without_rebalance(broker):
    """A static member (group.instance.id) that closes and comes back rejoins without a rebalance:
    the other member's partitions are never revoked, and the returning one gets its own back."""
    topic, group = unique_topic("static"), unique_topic("g")
    create_topic(broker.bootstrap, topic, 4)
    revoked = collections.Counter()

    def static(name):
        consumer = confluent_consumer(broker.bootstrap, group, **{"group.instance.id": name})
        consumer.subscribe([topic], on_revoke=lambda c, partitions: revoked.update([name]) if partitions else None)
        return consumer

    consumers = {0: static("a"), 1: static("b")}
    ledger = Ledger()
    try:
        poll_confluent(consumers, ledger, lambda: balanced(consumers.values(), 4), "2 static members to share 4 partitions")
        before = partitions_of(consumers[1])
        revoked.clear()
        consumers.pop(1).close()  # a static member does not leave the group on close
        consumers[1] = static("b")
        poll_confluent(consumers, ledger, lambda: partitions_of(consumers[1]) == before,
                       "the restarted static member to get its partitions back")
        assert revoked["a"] == 0, "the other static member was rebalanced"
    finally:
        for consumer in consumers.values():
            consumer.close()


@pytest.mark.parametrize("restart", ["graceful", "kill -9"])
@pytest.mark.parametrize("backend", backends())
def test_confluent_commits_survive_a_broker_restart(make_broker, tmp_path, backend, restart):
    """Offsets committed before the broker restarts (SIGTERM, or SIGKILL right after the commit was
    acknowledged) are where the group resumes afterwards."""
    if backend == "memory":
        pytest.skip("the memory backend keeps nothing across a restart")
    (tmp_path / "data").mkdir(exist_ok=True)  # durable backends want an existing data directory
    broker = make_broker(backend=backend)
    topic, group = unique_topic("restart"), unique_topic("g")
    create_topic(broker.bootstrap, topic, 3)
    produce(broker.bootstrap, topic, 3, 50)
    first = confluent_consumer(broker.bootstrap, group)
    first.subscribe([topic])
    ledger = Ledger()
    poll_confluent({0: first}, ledger, lambda: consumed(ledger, 3, 20), "20 messages of each partition")
    first.commit(offsets=[TopicPartition(topic, p, 20) for p in range(3)], asynchronous=False)
    committed = {tp.partition: tp.offset for tp in first.committed([TopicPartition(topic, p) for p in range(3)], timeout=30)}
    assert committed == {0: 20, 1: 20, 2: 20}
    first.close()
    if restart == "graceful":
        broker.restart()
    else:
        broker.kill()  # nothing is flushed: the commit was durable when it was acknowledged
        broker.start()

    second = confluent_consumer(broker.bootstrap, group)
    second.subscribe([topic])
    resumed = Ledger()
    try:
        poll_confluent({1: second}, resumed, lambda: all(resumed.seen[(p, 49)] for p in range(3)), "the rest")
        resumed.check_exactly_once({p: range(20, 50) for p in range(3)})
    finally:
        second.close()


def test_confluent_admin_lists_describes_and_deletes_groups(broker):
    """AdminClient: list_consumer_groups (with a state filter), describe_consumer_groups (members,
    assignments, protocol) and delete_consumer_groups (refused while members are in, then deleted
    with its offsets)."""
    topic, group = unique_topic("adm"), unique_topic("g")
    create_topic(broker.bootstrap, topic, 4)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    consumers = {i: confluent_consumer(broker.bootstrap, group) for i in range(2)}
    for consumer in consumers.values():
        consumer.subscribe([topic])
    ledger = Ledger()
    try:
        poll_confluent(consumers, ledger, lambda: balanced(consumers.values(), 4), "2 consumers to share 4 partitions")
        produce(broker.bootstrap, topic, 4, 5)
        poll_confluent(consumers, ledger, lambda: consumed(ledger, 4, 5), "20 messages")

        listed = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}).result(30)
        assert group in [g.group_id for g in listed.valid]
        described = admin.describe_consumer_groups([group])[group].result(30)
        assert described.state == ConsumerGroupState.STABLE
        assert described.coordinator.id == 1
        assert described.partition_assignor in ("range", "roundrobin")
        assert len(described.members) == 2
        assigned = [tp.partition for m in described.members for tp in m.assignment.topic_partitions]
        assert sorted(assigned) == [0, 1, 2, 3]

        with pytest.raises(KafkaException) as refused:
            admin.delete_consumer_groups([group])[group].result(30)
        assert refused.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    finally:
        for consumer in consumers.values():
            consumer.close()

    empty = admin.list_consumer_groups(states={ConsumerGroupState.EMPTY}).result(30)
    assert group in [g.group_id for g in empty.valid]
    admin.delete_consumer_groups([group])[group].result(30)
    assert group not in [g.group_id for g in admin.list_consumer_groups().result(30).valid]
    with pytest.raises(KafkaException) as missing:
        admin.delete_consumer_groups([group])[group].result(30)
    assert missing.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND
    # The deleted group's offsets are gone: a new member of that group starts from the beginning.
    fresh = confluent_consumer(broker.bootstrap, group)
    try:
        committed = fresh.committed([TopicPartition(topic, p) for p in range(4)], timeout=30)
        assert all(tp.offset < 0 for tp in committed), committed
    finally:
        fresh.close()


# MARK: kafka-python


def test_kafka_python_group_consumers_share_partitions_and_resume(broker):
    """Two kafka-python group consumers split 4 partitions; when one closes the other takes over from
    the commits; everything is consumed exactly once (repeats only where a commit failed)."""
    from kafka import KafkaConsumer
    from kafka.errors import CommitFailedError, KafkaError as KafkaPythonError
    from kafka.structs import OffsetAndMetadata, TopicPartition as KTopicPartition

    topic, group = unique_topic("kpg"), unique_topic("g")
    create_topic(broker.bootstrap, topic, 4)

    def consumer():
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, auto_offset_reset="earliest",
                          enable_auto_commit=False, session_timeout_ms=SESSION_TIMEOUT_MS,
                          heartbeat_interval_ms=500, max_poll_records=10)
        c.subscribe([topic])
        return c

    consumers = {0: consumer(), 1: consumer()}
    ledger = Ledger()

    def poll(until, what):
        deadline = time.monotonic() + WAIT_S
        while not until():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            for index, c in consumers.items():
                for records in c.poll(timeout_ms=50).values():
                    for record in records:
                        ledger.consume(index, record.partition, record.offset)
                        tp = KTopicPartition(topic, record.partition)
                        try:
                            c.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
                        except (CommitFailedError, KafkaPythonError) as error:
                            print(f"kafka-python consumer {index}: commit failed: {error}")
                            ledger.uncommitted.add((record.partition, record.offset))

    def kp_balanced():
        return covers([{tp.partition for tp in c.assignment()} for c in consumers.values()], 4)

    try:
        poll(kp_balanced, "2 kafka-python consumers to share 4 partitions")
        produce(broker.bootstrap, topic, 4, 30)
        poll(lambda: consumed(ledger, 4, 30), "120 messages")
        consumers.pop(1).close()
        poll(kp_balanced, "the remaining consumer to take all 4 partitions")
        produce(broker.bootstrap, topic, 4, 30, start=30)
        poll(lambda: consumed(ledger, 4, 60), "240 messages")
        ledger.check_exactly_once({p: range(60) for p in range(4)})
    finally:
        for c in consumers.values():
            c.close()


def test_kafka_python_admin_lists_describes_and_deletes_groups(broker):
    """KafkaAdminClient: list_groups, describe_groups, list_group_offsets, delete_groups."""
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.structs import TopicPartition as KTopicPartition

    topic, group = unique_topic("kpa"), unique_topic("g")
    create_topic(broker.bootstrap, topic, 2)
    produce(broker.bootstrap, topic, 2, 10)
    member = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group, auto_offset_reset="earliest",
                           enable_auto_commit=False, session_timeout_ms=SESSION_TIMEOUT_MS)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        got = 0
        deadline = time.monotonic() + WAIT_S
        while got < 20:
            assert time.monotonic() < deadline, "timed out consuming"
            got += sum(len(records) for records in member.poll(timeout_ms=200).values())
        member.commit()

        groups = {g["group_id"]: g for g in admin.list_groups()}
        assert groups[group]["protocol_type"] == "consumer"
        stable = [g["group_id"] for g in admin.list_groups(states_filter=["Stable"])]
        assert group in stable
        description = admin.describe_groups([group])[group]
        assert description["error"] is None
        assert description["group_state"] == "Stable"
        assert description["protocol_type"] == "consumer"
        assert len(description["members"]) == 1
        offsets = admin.list_group_offsets({group: None})[group]
        assert {tp.partition: meta.offset for tp, meta in offsets.items()} == {0: 10, 1: 10}
        assert admin.delete_groups([group]) == {group: "NonEmptyGroupError"}
    finally:
        member.close()
    assert admin.delete_groups([group]) == {group: "OK"}
    assert admin.delete_groups([group]) == {group: "GroupIdNotFoundError"}
    assert group not in [g["group_id"] for g in admin.list_groups()]
    offsets = admin.list_group_offsets({group: [KTopicPartition(topic, 0)]})[group]
    assert offsets[KTopicPartition(topic, 0)].offset == -1
    admin.close()


# MARK: aiokafka


def test_aiokafka_group_consumers_share_partitions_and_resume(broker):
    """Two aiokafka group consumers split 4 partitions and commit; a new group member after both stop
    resumes exactly at the commits."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import CommitFailedError, KafkaError as AIOKafkaError
    from aiokafka.structs import TopicPartition as ATopicPartition

    topic, group = unique_topic("aio"), unique_topic("g")
    create_topic(broker.bootstrap, topic, 4)
    produce(broker.bootstrap, topic, 4, 25)

    async def scenario():
        def consumer():
            return AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=500)

        first, second = consumer(), consumer()
        await first.start()
        await second.start()
        ledger = Ledger()
        try:
            deadline = time.monotonic() + WAIT_S
            while not covers([{tp.partition for tp in c.assignment()} for c in (first, second)], 4):
                assert time.monotonic() < deadline, "timed out waiting for the members to share the partitions"
                await asyncio.sleep(0.1)
            # Both members consume and commit the first 10 of each partition; later ones are left
            # (uncommitted) for the next member.
            while not consumed(ledger, 4, 10):
                assert time.monotonic() < deadline, "timed out consuming"
                for index, c in enumerate((first, second)):
                    for tp, records in (await c.getmany(timeout_ms=100)).items():
                        wanted = [r for r in records if r.offset < 10]
                        for record in wanted:
                            ledger.consume(index, record.partition, record.offset)
                        if not wanted:
                            continue
                        try:
                            await c.commit({tp: wanted[-1].offset + 1})
                        except (CommitFailedError, AIOKafkaError) as error:
                            print(f"aiokafka consumer {index}: commit failed: {error}")
                            ledger.uncommitted.update((r.partition, r.offset) for r in wanted)
        finally:
            await first.stop()
            await second.stop()

        third = consumer()
        await third.start()
        resumed = Ledger()
        try:
            committed = {p: await third.committed(ATopicPartition(topic, p)) for p in range(4)}
            assert committed == {p: 10 for p in range(4)}
            deadline = time.monotonic() + WAIT_S
            while not all(resumed.seen[(p, 24)] for p in range(4)):
                assert time.monotonic() < deadline, "timed out resuming"
                for records in (await third.getmany(timeout_ms=200)).values():
                    for record in records:
                        resumed.consume(0, record.partition, record.offset)
        finally:
            await third.stop()
        ledger.check_exactly_once({p: range(10) for p in range(4)})
        resumed.check_exactly_once({p: range(10, 25) for p in range(4)})

    asyncio.run(scenario())


# MARK: kcat


@pytest.mark.skipif(KCAT is None, reason="kcat is not installed (scripts/test installs it)")
def test_kcat_balanced_consumer_commits_and_resumes(broker):
    """kcat -G (librdkafka 2.0.2's group consumer) reads everything and commits on exit; a second
    kcat -G of the same group finds nothing left, and sees only what was produced since."""
    topic, group = unique_topic("kcatg"), unique_topic("g")
    create_topic(broker.bootstrap, topic, 3)
    produce(broker.bootstrap, topic, 3, 10)

    def kcat_group():
        result = subprocess.run(
            [KCAT, "-b", broker.bootstrap, "-X", "api.version.request=true", "-G", group,
             "-X", "auto.offset.reset=earliest",
             "-X", f"session.timeout.ms={SESSION_TIMEOUT_MS}", "-X", "auto.commit.interval.ms=100",
             "-e", "-q", "-f", "%p:%o:%s\n", topic],
            capture_output=True, timeout=WAIT_S, text=True,
        )
        assert result.returncode == 0, result.stderr
        return sorted(line for line in result.stdout.splitlines() if line)

    first = kcat_group()
    assert len(first) == 30
    assert sorted((int(p), int(o)) for p, o, _ in (line.split(":", 2) for line in first)) == \
        sorted((p, o) for p in range(3) for o in range(10))
    produce(broker.bootstrap, topic, 3, 2, start=10)
    second = kcat_group()
    assert sorted((int(p), int(o)) for p, o, _ in (line.split(":", 2) for line in second)) == \
        sorted((p, o) for p in range(3) for o in range(10, 12))


# MARK: API versions each client uses


class VersionRecorder:
    """A TCP proxy that records the (API key, version) of every request passing through."""

    NAMES = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit", 9: "OffsetFetch",
             10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup",
             15: "DescribeGroups", 16: "ListGroups", 18: "ApiVersions", 19: "CreateTopics", 42: "DeleteGroups"}

    def __init__(self, upstream_port: int, port: int):
        self.upstream_port = upstream_port
        self.seen: set[tuple[int, int]] = set()
        self.listener = socket.create_server(("127.0.0.1", port))
        self.listener.settimeout(0.2)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _requests(self, client, upstream):
        buffer = b""
        try:
            while chunk := client.recv(65536):
                upstream.sendall(chunk)
                buffer += chunk
                while len(buffer) >= 8:
                    size = struct.unpack(">i", buffer[:4])[0]
                    if len(buffer) < 4 + size:
                        break
                    self.seen.add(struct.unpack(">hh", buffer[4:8]))
                    buffer = buffer[4 + size:]
        except OSError:
            pass
        finally:
            upstream.close()

    @staticmethod
    def _pipe(source, sink):
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            sink.close()

    def group_versions(self) -> dict[str, list[int]]:
        versions = collections.defaultdict(list)
        for key, version in sorted(self.seen):
            if key in (8, 9, 10, 11, 12, 13, 14, 15, 16, 42):
                versions[self.NAMES[key]].append(version)
        return dict(versions)

    def stop(self):
        self.stopped = True
        self.listener.close()


ADVERTISED = {"OffsetCommit": range(0, 10), "OffsetFetch": range(0, 10), "FindCoordinator": range(0, 6),
              "JoinGroup": range(0, 10), "Heartbeat": range(0, 5), "LeaveGroup": range(0, 6),
              "SyncGroup": range(0, 6), "DescribeGroups": range(0, 6), "ListGroups": range(0, 6),
              "DeleteGroups": range(0, 3)}


def test_group_api_versions_each_client_uses(make_broker):
    """Records which version of each group API every client sends (printed for the compatibility
    table); all are within what Fjord advertises, and each client ran the full join/sync/commit cycle."""
    proxy_port = free_port()
    broker = make_broker(extra_args=["--advertised-listener", f"127.0.0.1:{proxy_port}"])
    # Metadata sends every client to the advertised address, so everything goes through the proxy.
    recorder = VersionRecorder(broker.port, proxy_port)
    bootstrap = f"127.0.0.1:{proxy_port}"
    table = {}

    def run(name, action):
        recorder.seen.clear()
        action(bootstrap)
        table[name] = recorder.group_versions()

    topic = unique_topic("ver")
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 2, 3)

    def confluent(bootstrap):
        c = confluent_consumer(bootstrap, unique_topic("g"))
        c.subscribe([topic])
        ledger = Ledger()
        poll_confluent({0: c}, ledger, lambda: consumed(ledger, 2, 3), "confluent consumption")
        c.close()
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.describe_consumer_groups(["x"])["x"].exception(30)
        admin.list_consumer_groups().result(30)
        admin.delete_consumer_groups(["x"])["x"].exception(30)

    def kafka_python(bootstrap):
        from kafka import KafkaAdminClient, KafkaConsumer
        c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=unique_topic("g"), auto_offset_reset="earliest",
                          enable_auto_commit=False, session_timeout_ms=SESSION_TIMEOUT_MS)
        got, deadline = 0, time.monotonic() + WAIT_S
        while got < 6:
            assert time.monotonic() < deadline
            got += sum(len(r) for r in c.poll(timeout_ms=200).values())
        c.commit()
        c.close()
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.describe_groups(["x"])
        admin.list_groups()
        admin.delete_groups(["x"])
        admin.close()

    def aiokafka(bootstrap):
        from aiokafka import AIOKafkaConsumer

        async def go():
            c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=unique_topic("g"),
                                 auto_offset_reset="earliest", enable_auto_commit=False)
            await c.start()
            got, deadline = 0, time.monotonic() + WAIT_S
            while got < 6:
                assert time.monotonic() < deadline
                got += sum(len(r) for r in (await c.getmany(timeout_ms=200)).values())
            await c.commit()
            await c.stop()
        asyncio.run(go())

    def kcat(bootstrap):
        subprocess.run([KCAT, "-b", bootstrap, "-X", "api.version.request=true", "-G", unique_topic("g"),
                        "-X", "auto.offset.reset=earliest", "-e", "-q", topic],
                       capture_output=True, timeout=WAIT_S, check=True)

    try:
        run("confluent-kafka 2.16.1 (librdkafka 2.16)", confluent)
        run("kafka-python 3.0.12", kafka_python)
        run("aiokafka 0.14.0", aiokafka)
        if KCAT is not None:
            run("kcat (librdkafka 2.0.2)", kcat)
    finally:
        recorder.stop()
    for client, versions in table.items():
        print(f"{client}: " + ", ".join(f"{api} v{'/'.join(map(str, v))}" for api, v in sorted(versions.items())))
        for api, used in versions.items():
            assert all(v in ADVERTISED[api] for v in used), f"{client} used {api} {used}"
        for api in ("FindCoordinator", "JoinGroup", "SyncGroup", "OffsetCommit", "OffsetFetch"):
            assert api in versions, f"{client} never sent {api}: {versions}"
