#!/usr/bin/env python3
"""Writes golden RecordBatch v2 bytes built by a real client's encoder, for KafkaRecordsTests.

kafka-python's DefaultRecordBatchBuilder is the code its producer uses to build the batches it sends; it runs
offline, so these are the exact bytes kafka-python would put in a ProduceRequest (baseOffset 0, leader epoch 0).

Usage (once; the outputs are committed):
    python3 -m venv /tmp/golden-venv
    /tmp/golden-venv/bin/pip install kafka-python==3.0.12 python-snappy lz4 zstandard
    /tmp/golden-venv/bin/python Tests/KafkaRecordsTests/make_golden_batches.py

Outputs, in Golden/ beside this script:
    <name>.hex              one batch as lowercase hex (none, gzip, snappy, snappy-raw, lz4, zstd, zstd-no-content-size)
    expected_records.json   what every batch holds: producer state and the records (bytes as hex, null as null)
"""
import json
import os
import struct

import kafka
import zstandard
import kafka.record.default_records as default_records
from kafka.codec import snappy_encode
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Golden")

PRODUCER_ID = 4242
PRODUCER_EPOCH = 3
BASE_SEQUENCE = 17
BASE_TIMESTAMP_MS = 1_700_000_000_000
# Deliberately not monotonic: a batch's records may carry any timestamps, and lookups must not assume order.
TIMESTAMP_OFFSETS_MS = [500, 0, 900, 300, 900, 100, 750, 200, 50, 600, 0, 880]


def records():
    """Keys and values repeat enough that every codec shrinks them (kafka-python sends uncompressed otherwise)."""
    result = []
    for index, delta in enumerate(TIMESTAMP_OFFSETS_MS):
        key = None if index % 4 == 1 else ("key-%03d" % index).encode()
        value = None if index == 5 else (("fjord golden value %02d " % index) * 6).encode()
        headers = []
        if index % 3 == 0:
            headers.append(("trace-id", ("trace-%d" % index).encode()))
        if index % 5 == 0:
            headers.append(("nullable", None))
        if index == 7:
            headers.append(("utf8-ключ", "значение".encode()))
        result.append(
            {"timestamp": BASE_TIMESTAMP_MS + delta, "key": key, "value": value, "headers": headers}
        )
    return result


def build(codec_id):
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec_id,
        is_transactional=False,
        producer_id=PRODUCER_ID,
        producer_epoch=PRODUCER_EPOCH,
        base_sequence=BASE_SEQUENCE,
        batch_size=1 << 20,
    )
    for offset, record in enumerate(records()):
        metadata = builder.append(
            offset, timestamp=record["timestamp"], key=record["key"], value=record["value"], headers=record["headers"]
        )
        assert metadata is not None
    data = bytes(builder.build())
    batch = DefaultRecordBatch(data)
    assert batch.validate_crc()
    attributes = struct.unpack_from(">h", data, 21)[0]
    assert attributes & 0x07 == codec_id, "kafka-python sent the batch uncompressed: make the records compressible"
    # Read it back with kafka-python's own decoder too.
    assert [r.value for r in batch] == [r["value"] for r in records()]
    return data


def main():
    os.makedirs(GOLDEN, exist_ok=True)
    codecs = {
        "none": DefaultRecordBatch.CODEC_NONE,
        "gzip": DefaultRecordBatch.CODEC_GZIP,
        "snappy": DefaultRecordBatch.CODEC_SNAPPY,
        "lz4": DefaultRecordBatch.CODEC_LZ4,
        "zstd": DefaultRecordBatch.CODEC_ZSTD,
    }
    for name, codec_id in codecs.items():
        write(name, build(codec_id))

    # librdkafka sends raw (unframed) snappy; kafka-python can too with xerial_compatible=False.
    original = default_records.snappy_encode
    default_records.snappy_encode = lambda payload: snappy_encode(payload, xerial_compatible=False)
    try:
        data = build(DefaultRecordBatch.CODEC_SNAPPY)
        assert data[61:69] != b"\x82SNAPPY\x00"
        write("snappy-raw", data)
    finally:
        default_records.snappy_encode = original

    # Streaming zstd encoders (librdkafka's among them) may leave the frame content size out.
    original = default_records.zstd_encode
    default_records.zstd_encode = lambda payload: zstandard.ZstdCompressor(write_content_size=False).compress(payload)
    try:
        data = build(DefaultRecordBatch.CODEC_ZSTD)
        assert zstandard.get_frame_parameters(data[61:]).content_size == zstandard.CONTENTSIZE_UNKNOWN
        write("zstd-no-content-size", data)
    finally:
        default_records.zstd_encode = original

    expected = {
        "generator": "kafka-python %s DefaultRecordBatchBuilder" % kafka.__version__,
        "producerId": PRODUCER_ID,
        "producerEpoch": PRODUCER_EPOCH,
        "baseSequence": BASE_SEQUENCE,
        "records": [
            {
                "timestamp": r["timestamp"],
                "key": None if r["key"] is None else r["key"].hex(),
                "value": None if r["value"] is None else r["value"].hex(),
                "headers": [{"key": k, "value": None if v is None else v.hex()} for k, v in r["headers"]],
            }
            for r in records()
        ],
    }
    with open(os.path.join(GOLDEN, "expected_records.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")


def write(name, data):
    with open(os.path.join(GOLDEN, name + ".hex"), "w") as f:
        f.write(data.hex() + "\n")
    print("%-10s %5d bytes" % (name, len(data)))


if __name__ == "__main__":
    main()
