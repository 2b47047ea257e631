#!/usr/bin/env python3
"""Capture the request frames a real Kafka client sends to a running broker, as golden files.

A proxy on 127.0.0.1:--port forwards every connection to the broker given by --broker and
records, per (API, version), the first client-to-broker frame whose API is in --apis. The client
command is started with {bootstrap} replaced by the proxy's address; the proxy stops when the
command exits (or at the time limit). So that clients keep talking through the proxy after
Metadata, start the broker with --advertised-listener 127.0.0.1:<proxy port>. Nothing leaves the
machine.

Example (run from the package root):

    fjord --listen 127.0.0.1:19092 --advertised-listener 127.0.0.1:19093 &
    python3 Tests/KafkaMessagesTests/capture_proxy.py --broker 127.0.0.1:19092 --port 19093 \\
        --label kcat-librdkafka-2.0.2 --apis Produce -- \\
        sh -c "echo hello | kcat -b {bootstrap} -P -t golden"

Files go to Tests/KafkaMessagesTests/Golden/<label>-<Api>-v<version>.hex in the format
capture_first_frame.py writes: '#' comment lines, then the frame without its size prefix as hex.
"""

import argparse
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

API_NAMES = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 18: "ApiVersions"}
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Golden")


def read_frame(sock):
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        if not chunk:
            return None
        header += chunk
    (size,) = struct.unpack(">i", header)
    body = b""
    while len(body) < size:
        chunk = sock.recv(min(1 << 20, size - len(body)))
        if not chunk:
            return None
        body += chunk
    return body


class Proxy:
    def __init__(self, broker, port, label, apis, command_text):
        self.broker_host, broker_port = broker.rsplit(":", 1)
        self.broker_port = int(broker_port)
        self.label = label
        self.apis = apis
        self.command_text = command_text
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.captured = set()
        self.lock = threading.Lock()
        self.stopped = False

    def record(self, frame):
        api_key, version = struct.unpack_from(">hh", frame)
        name = API_NAMES.get(api_key, f"Api{api_key}")
        if name not in self.apis:
            return
        with self.lock:
            if (api_key, version) in self.captured:
                return
            self.captured.add((api_key, version))
        path = os.path.join(GOLDEN, f"{self.label}-{name}-v{version}.hex")
        with open(path, "w") as out:
            command = " ".join(self.command_text.split())  # one comment line, whatever the command
            out.write(f"# {name} v{version} request captured by capture_proxy.py from: {command}\n")
            out.write(f"# {len(frame)} bytes, without the 4-byte size prefix\n")
            hexed = frame.hex()
            for i in range(0, len(hexed), 64):
                out.write(hexed[i:i + 64] + "\n")
        print(f"captured {path}", file=sys.stderr)

    def pump(self, client):
        upstream = socket.create_connection((self.broker_host, self.broker_port))
        try:
            while not self.stopped:
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                if client in ready:
                    frame = read_frame(client)
                    if frame is None:
                        return
                    self.record(frame)
                    upstream.sendall(struct.pack(">i", len(frame)) + frame)
                if upstream in ready:
                    frame = read_frame(upstream)
                    if frame is None:
                        return
                    client.sendall(struct.pack(">i", len(frame)) + frame)
        finally:
            upstream.close()
            client.close()

    def serve(self):
        self.listener.settimeout(0.2)
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self.pump, args=(client,), daemon=True).start()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--apis", default="Produce,Fetch")
    parser.add_argument("--time-limit", type=float, default=60)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    proxy = Proxy(args.broker, args.port, args.label, set(args.apis.split(",")), " ".join(command))
    threading.Thread(target=proxy.serve, daemon=True).start()
    bootstrap = f"127.0.0.1:{proxy.port}"
    child = subprocess.Popen([part.replace("{bootstrap}", bootstrap) for part in command])
    try:
        child.wait(timeout=args.time_limit)
    except subprocess.TimeoutExpired:
        child.kill()
    proxy.stopped = True
    return 0 if proxy.captured else 1


if __name__ == "__main__":
    sys.exit(main())
