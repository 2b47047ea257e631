"""kcat (Debian's librdkafka 2.0.2) against the real fjord binary. This librdkafka cannot skip
tagged fields at the end of an ApiVersions v3 response, so these tests guard that trap too."""

import shutil
import subprocess

import pytest

from conftest import unique_topic


@pytest.fixture
def broker(broker_on_each_backend):
    """This module's tests run against every backend."""
    return broker_on_each_backend


KCAT = shutil.which("kcat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed (scripts/test installs it)")
TIMEOUT_S = 60


def kcat(broker, *args, input_bytes=None):
    result = subprocess.run(
        [KCAT, "-b", broker.bootstrap, "-X", "api.version.request=true", *args],
        input=input_bytes, capture_output=True, timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, f"kcat {args} failed ({result.returncode}):\n{result.stderr.decode(errors='replace')}"
    return result


def test_kcat_version_is_debian_librdkafka():
    """The compatibility table reports the librdkafka kcat links; record it in the test log."""
    output = subprocess.run([KCAT, "-V"], capture_output=True, timeout=TIMEOUT_S).stdout.decode()
    assert "librdkafka" in output
    print(output)


def test_kcat_lists_metadata(broker):
    """kcat -L shows the broker at its advertised address and an auto-created topic."""
    topic = unique_topic("kcat-meta")
    out = kcat(broker, "-L", "-t", topic).stdout.decode()
    assert f"broker 1 at {broker.bootstrap}" in out
    assert f'topic "{topic}" with 1 partitions' in out
    assert "Broker: " not in out, out  # no per-topic error


def test_kcat_produces_and_consumes(broker):
    """Keyed messages produced with kcat -P come back with kcat -C, in order, with their offsets."""
    topic = unique_topic("kcat-pc")
    lines = [f"key{i}:value {i}" for i in range(500)]
    kcat(broker, "-P", "-t", topic, "-p", "0", "-K:", "-X", "acks=all", input_bytes="\n".join(lines).encode() + b"\n")
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-f", "%k|%s|%o\n").stdout.decode()
    got = out.strip().split("\n")
    assert got == [f"key{i}|value {i}|{i}" for i in range(500)]


def test_kcat_consumes_from_an_offset(broker):
    """kcat -o N starts at offset N."""
    topic = unique_topic("kcat-off")
    kcat(broker, "-P", "-t", topic, "-p", "0", input_bytes=b"\n".join(b"m%d" % i for i in range(50)) + b"\n")
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "42", "-e", "-f", "%s@%o\n").stdout.decode()
    assert out.strip().split("\n") == [f"m{i}@{i}" for i in range(42, 50)]
