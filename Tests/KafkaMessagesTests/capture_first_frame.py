#!/usr/bin/env python3
"""Capture the first request frame a real Kafka client sends, as a golden file for the codec tests.

A one-shot listener on 127.0.0.1 (a random free port) accepts one connection, reads one
length-prefixed frame, writes it as hex and exits. With --answer-api-versions it first answers the
client's ApiVersions request (v3 layout, advertising the versions Fjord generates, with an empty
tagged-field section) and captures the request that follows instead, e.g. kcat's Metadata. The client command is started with
{bootstrap} replaced by 127.0.0.1:PORT and is killed once the frame is in (or when the time
limit runs out). Nothing leaves the machine.

Examples (run from the package root):

    python3 Tests/KafkaMessagesTests/capture_first_frame.py --label kcat-librdkafka-2.0.2 \\
        -- kcat -b {bootstrap} -L

    python3 Tests/KafkaMessagesTests/capture_first_frame.py --label kafka-python-3.0.12 \\
        -- python3 -c "import kafka; kafka.KafkaAdminClient(bootstrap_servers='{bootstrap}')"

    python3 Tests/KafkaMessagesTests/capture_first_frame.py --label kcat-librdkafka-2.0.2 \\
        --answer-api-versions -- kcat -b {bootstrap} -L

The file is written to Tests/KafkaMessagesTests/Golden/<label>-<Api>-v<version>.hex: '#' comment
lines saying what was captured, then the frame (without its 4-byte size prefix) as hex, 32 bytes
per line.
"""

import argparse
import os
import socket
import struct
import subprocess
import sys
import time

# The API names the first frame is usually one of; anything else is named by its key.
API_NAMES = {18: "ApiVersions", 3: "Metadata", 17: "SaslHandshake", 36: "SaslAuthenticate"}
MAX_FRAME_BYTES = 1 << 20  # a first request is tiny; refuse anything absurd

# (api key, min version, max version) Fjord advertises: KafkaCodegen.generatedApis.
ADVERTISED = [
    (0, 3, 9), (1, 4, 12), (2, 1, 7), (3, 0, 12), (8, 2, 8), (9, 1, 7), (10, 0, 3), (11, 0, 7),
    (12, 0, 4), (13, 0, 4), (14, 0, 5), (15, 0, 5), (16, 0, 4), (17, 0, 1), (18, 0, 3), (19, 0, 7),
    (20, 0, 6), (21, 0, 2), (22, 0, 4), (32, 0, 4), (36, 0, 2), (37, 0, 3), (42, 0, 2),
]


def api_versions_response(correlation_id: int) -> bytes:
    """An ApiVersions v3 response: header v0, then the flexible body with no tagged fields."""
    body = struct.pack(">h", 0)  # ErrorCode
    body += bytes([len(ADVERTISED) + 1])  # compact array count (< 127 entries)
    for key, low, high in ADVERTISED:
        body += struct.pack(">hhh", key, low, high) + b"\x00"
    body += struct.pack(">i", 0) + b"\x00"  # ThrottleTimeMs, empty tagged fields
    frame = struct.pack(">i", correlation_id) + body
    return struct.pack(">i", len(frame)) + frame


def read_frame(connection: socket.socket, deadline: float) -> bytes:
    (size,) = struct.unpack(">i", read_exactly(connection, 4, deadline))
    if not 8 <= size <= MAX_FRAME_BYTES:
        raise ValueError(f"implausible frame size {size}")
    return read_exactly(connection, size, deadline)


def read_exactly(connection: socket.socket, count: int, deadline: float) -> bytes:
    data = b""
    while len(data) < count:
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = connection.recv(count - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="client name and version, e.g. kcat-librdkafka-2.0.2")
    parser.add_argument(
        "--answer-api-versions", action="store_true", help="answer ApiVersions and capture the next request"
    )
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the frame")
    parser.add_argument(
        "--out-dir",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "Golden"),
        help="directory for the .hex file",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="client command after --, with {bootstrap}")
    arguments = parser.parse_args()
    command = arguments.command[1:] if arguments.command[:1] == ["--"] else arguments.command
    if not command:
        parser.error("give the client command after --")

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    bootstrap = "127.0.0.1:%d" % listener.getsockname()[1]
    client_command = [part.replace("{bootstrap}", bootstrap) for part in command]
    deadline = time.monotonic() + arguments.timeout

    client = subprocess.Popen(client_command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        listener.settimeout(arguments.timeout)
        connection, _ = listener.accept()
        with connection:
            frame = read_frame(connection, deadline)
            if arguments.answer_api_versions:
                api_key, _, correlation_id = struct.unpack(">hhi", frame[:8])
                if api_key != 18:
                    raise ValueError(f"expected ApiVersions first, got API key {api_key}")
                connection.sendall(api_versions_response(correlation_id))
                frame = read_frame(connection, deadline)
    finally:
        client.kill()
        client.wait()
        listener.close()

    api_key, api_version, correlation_id = struct.unpack(">hhi", frame[:8])
    api_name = API_NAMES.get(api_key, f"ApiKey{api_key}")
    os.makedirs(arguments.out_dir, exist_ok=True)
    path = os.path.join(arguments.out_dir, f"{arguments.label}-{api_name}-v{api_version}.hex")
    with open(path, "w") as out:
        which = "Request frame after ApiVersions" if arguments.answer_api_versions else "First request frame"
        out.write(f"# {which} sent by {arguments.label} (size prefix removed).\n")
        out.write(f"# API key {api_key} ({api_name}) version {api_version}, correlation id {correlation_id},"
                  f" {len(frame)} bytes.\n")
        out.write("# Captured by Tests/KafkaMessagesTests/capture_first_frame.py.\n")
        for start in range(0, len(frame), 32):
            out.write(frame[start:start + 32].hex() + "\n")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
