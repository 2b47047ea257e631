"""A minimal Kafka protocol client for tests that real clients cannot express: exact duplicate
batches, malformed frames, unsupported versions. Non-flexible request versions only, encoded by
hand from the Kafka protocol specs; RecordBatch v2 with CRC-32C computed here."""

import socket
import struct
import time

# ---------------------------------------------------------------------------------------------
# CRC-32C (Castagnoli), table-driven: small batches only.
_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _varint(value: int) -> bytes:
    value = (value << 1) ^ (value >> 63)  # zigzag
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _bytes_or_null(value: bytes | None) -> bytes:
    return _varint(-1) if value is None else _varint(len(value)) + value


def record_batch(values, *, producer_id=-1, producer_epoch=-1, base_sequence=-1, base_timestamp=None,
                 keys=None, base_offset=0, attributes=0) -> bytes:
    """A RecordBatch v2, uncompressed, one record per value (attributes 0x10: transactional)."""
    ts = int(time.time() * 1000) if base_timestamp is None else base_timestamp
    records = bytearray()
    for i, value in enumerate(values):
        key = keys[i] if keys else None
        body = (b"\x00" + _varint(0) + _varint(i) + _bytes_or_null(key) + _bytes_or_null(value) + _varint(0))
        records += _varint(len(body)) + body
    count = len(values)
    after_crc = struct.pack(">hiqqqhii", attributes, count - 1, ts, ts, producer_id, producer_epoch, base_sequence, count) + records
    crc = crc32c(after_crc)
    batch_length = 4 + 1 + 4 + len(after_crc)  # leader epoch + magic + crc + rest
    return struct.pack(">qiibI", base_offset, batch_length, 0, 2, crc) + after_crc


# ---------------------------------------------------------------------------------------------
# Encoding helpers for non-flexible versions.
def i8(v): return struct.pack(">b", v)
def i16(v): return struct.pack(">h", v)
def i32(v): return struct.pack(">i", v)
def i64(v): return struct.pack(">q", v)


def string(v: str | None) -> bytes:
    if v is None:
        return i16(-1)
    data = v.encode()
    return i16(len(data)) + data


def array(items: list[bytes]) -> bytes:
    return i32(len(items)) + b"".join(items)


def request_frame(api_key: int, version: int, correlation_id: int, body: bytes, client_id="fjord-e2e") -> bytes:
    """Request header v1 (non-flexible) + body, with the int32 size prefix."""
    payload = i16(api_key) + i16(version) + i32(correlation_id) + string(client_id) + body
    return i32(len(payload)) + payload


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        value = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value[0] if len(value) == 1 else value

    def i8(self): return self.take(">b")
    def i16(self): return self.take(">h")
    def i32(self): return self.take(">i")
    def i64(self): return self.take(">q")

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s


class Connection:
    def __init__(self, bootstrap: str, timeout: float = 10.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.correlation_id = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes:
        (size,) = struct.unpack(">i", self.recv_exact(4))
        return self.recv_exact(size)

    def is_closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True if the broker closes the connection within `timeout` (reads nothing else)."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def request(self, api_key: int, version: int, body: bytes) -> Reader:
        """Sends a request and returns a reader positioned after the v0 response header."""
        self.correlation_id += 1
        self.send_raw(request_frame(api_key, version, self.correlation_id, body))
        reader = Reader(self.recv_frame())
        assert reader.i32() == self.correlation_id
        return reader

    # -- typed helpers ---------------------------------------------------------------------
    def api_versions(self, version: int = 0):
        r = self.request(18, version, b"")
        error = r.i16()
        keys = {}
        for _ in range(r.i32()):
            key, lo, hi = r.i16(), r.i16(), r.i16()
            keys[key] = (lo, hi)
        return error, keys

    def init_producer_id(self) -> tuple[int, int, int]:
        r = self.request(22, 0, string(None) + i32(60000))
        r.i32()  # throttle
        return r.i16(), r.i64(), r.i16()

    def metadata(self, topics: list[str]):
        r = self.request(3, 1, array([string(t) for t in topics]))
        for _ in range(r.i32()):
            r.i32(); r.string(); r.i32(); r.string()
        r.i32()  # controller
        result = {}
        for _ in range(r.i32()):
            error, name, _internal = r.i16(), r.string(), r.i8()
            partitions = []
            for _ in range(r.i32()):
                p_error, index, leader = r.i16(), r.i32(), r.i32()
                for _ in range(r.i32()): r.i32()
                for _ in range(r.i32()): r.i32()
                partitions.append((index, p_error))
            result[name] = (error, partitions)
        return result

    def produce(self, topic: str, partition: int, records: bytes, acks: int = -1, version: int = 3):
        """Returns (error_code, base_offset, log_start_offset or None)."""
        body = (string(None) + i16(acks) + i32(30000)
                + array([string(topic) + array([i32(partition) + i32(len(records)) + records])]))
        r = self.request(0, version, body)
        r.i32(); r.string(); r.i32()  # topics=1, name, partitions=1
        r.i32()  # partition index
        error, base_offset = r.i16(), r.i64()
        r.i64()  # log append time
        log_start = r.i64() if version >= 5 else None
        return error, base_offset, log_start

    def list_offset(self, topic: str, partition: int, timestamp: int) -> tuple[int, int, int]:
        """ListOffsets v1: returns (error_code, timestamp, offset)."""
        body = i32(-1) + array([string(topic) + array([i32(partition) + i64(timestamp)])])
        r = self.request(2, 1, body)
        r.i32(); r.string(); r.i32(); r.i32()
        return r.i16(), r.i64(), r.i64()

    def fetch_batch_headers(self, topic: str, partition: int, offset: int = 0, max_bytes: int = 1 << 20):
        """Fetch v4: the stored batches' (base_offset, attributes, max_timestamp), as the broker serves them."""
        body = (i32(-1) + i32(0) + i32(0) + i32(max_bytes) + i8(0)
                + array([string(topic) + array([i32(partition) + i64(offset) + i32(max_bytes)])]))
        r = self.request(1, 4, body)
        r.i32()  # throttle
        r.i32(); r.string(); r.i32()  # one topic, its name, one partition
        r.i32()  # partition index
        error = r.i16()
        r.i64(); r.i64()  # high watermark, last stable offset
        aborted = r.i32()
        for _ in range(max(aborted, 0)):
            r.i64(); r.i64()
        size = r.i32()
        records = r.data[r.pos:r.pos + max(size, 0)]
        headers = []
        pos = 0
        while pos + 61 <= len(records):
            base_offset, batch_length = struct.unpack_from(">qi", records, pos)
            attributes, = struct.unpack_from(">h", records, pos + 21)
            max_timestamp, = struct.unpack_from(">q", records, pos + 35)
            headers.append((base_offset, attributes, max_timestamp))
            pos += 12 + batch_length
        return error, headers

    def produce_v8(self, topic: str, partition: int, records: bytes, acks: int = -1):
        """Produce v8: returns (error_code, [(batch_index, message)], error_message)."""
        body = (string(None) + i16(acks) + i32(30000)
                + array([string(topic) + array([i32(partition) + i32(len(records)) + records])]))
        r = self.request(0, 8, body)
        r.i32(); r.string(); r.i32()
        r.i32()  # partition index
        error = r.i16()
        r.i64(); r.i64(); r.i64()  # base offset, log append time, log start offset
        record_errors = [(r.i32(), r.string()) for _ in range(r.i32())]
        return error, record_errors, r.string()

    def incremental_alter_configs(self, resource_type: int, name: str, configs: dict):
        """IncrementalAlterConfigs v0 (SET, or DELETE for None): returns (error_code, error_message). The
        cluster-wide broker defaults (name "") need this: the Python clients route BROKER resources by id."""
        entries = [string(key) + i8(0 if value is not None else 1) + string(value) for key, value in configs.items()]
        r = self.request(44, 0, array([i8(resource_type) + string(name) + array(entries)]) + i8(0))
        r.i32(); r.i32()  # throttle, one response
        return r.i16(), r.string()


def record_batch_with_timestamps(values, timestamps) -> bytes:
    """An uncompressed RecordBatch v2 whose records carry the given timestamps (deltas from the first)."""
    base = timestamps[0]
    records = bytearray()
    for i, (value, ts) in enumerate(zip(values, timestamps)):
        body = b"\x00" + _varint(ts - base) + _varint(i) + _bytes_or_null(None) + _bytes_or_null(value) + _varint(0)
        records += _varint(len(body)) + body
    count = len(values)
    after_crc = struct.pack(">hiqqqhii", 0, count - 1, base, max(timestamps), -1, -1, -1, count) + records
    crc = crc32c(after_crc)
    return struct.pack(">qiibI", 0, 4 + 1 + 4 + len(after_crc), 0, 2, crc) + after_crc
