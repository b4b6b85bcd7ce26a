"""The loopback ADB peer speaks real ADB: Google's adb client (Debian's /usr/bin/adb) and adb_shell both use it."""
from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.equipment.adb_peer import AdbPeer
from tests.equipment.adb_peer import protocol as p
from tests.equipment.adb_peer.sync import SyncSession

ADB = shutil.which("adb") or "/usr/bin/adb"
pytestmark = pytest.mark.timeout(300)
needs_adb = pytest.mark.skipif(not os.path.exists(ADB), reason="Google's adb client is not installed (apt-get install adb)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def adb_client(tmp_path):
    """Run Google's adb client against a private ADB server port and HOME; kill that server afterwards."""
    server_port = _free_port()
    env = dict(os.environ, HOME=str(tmp_path / "home"), ADB_VENDOR_KEYS="")
    (tmp_path / "home").mkdir()

    def adb(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([ADB, "-P", str(server_port), *args], capture_output=True, text=True, env=env,
                              timeout=timeout)

    yield adb
    adb("kill-server", timeout=30)


@pytest.mark.adb
@needs_adb
def test_google_adb_client_shell_push_pull_roundtrip(tmp_path, adb_client):
    root = tmp_path / "device"
    with AdbPeer(root) as peer:
        serial = peer.address
        connect = adb_client("connect", serial)
        assert connect.returncode == 0, connect.stderr
        adb_client("-s", serial, "wait-for-device", timeout=30)
        devices = adb_client("devices", "-l").stdout
        assert f"{serial}" in devices and "device product:etf_peer" in devices

        echo = adb_client("-s", serial, "shell", "echo", "hello", "from", "adb")
        assert echo.stdout.strip() == "hello from adb"

        payload = os.urandom(5 * 1024 * 1024 + 123)  # several MB, not a multiple of any chunk size
        src, back = tmp_path / "src.bin", tmp_path / "back.bin"
        src.write_bytes(payload)
        push = adb_client("-s", serial, "push", str(src), "/data/local/tmp/big.bin", timeout=120)
        assert push.returncode == 0, push.stderr
        assert (root / "data/local/tmp/big.bin").read_bytes() == payload  # landed in the sandbox

        listing = adb_client("-s", serial, "shell", "ls -l /data/local/tmp/big.bin").stdout
        assert str(len(payload)) in listing

        pull = adb_client("-s", serial, "pull", "/data/local/tmp/big.bin", str(back), timeout=120)
        assert pull.returncode == 0, pull.stderr
        assert back.read_bytes() == payload

        missing = adb_client("-s", serial, "pull", "/data/local/tmp/none.bin", str(tmp_path / "x"))
        assert missing.returncode != 0 and "does not exist" in missing.stdout + missing.stderr

        # The client offered its public key once; the peer remembered it like "Always allow".
        keys = (root / "data/misc/adb/adb_keys").read_text().splitlines()
        assert len(keys) == 1


@pytest.mark.adb
@needs_adb
def test_google_adb_client_reconnects_with_a_signature(tmp_path, adb_client):
    root = tmp_path / "device"
    with AdbPeer(root) as peer:
        assert adb_client("connect", peer.address).returncode == 0
        adb_client("-s", peer.address, "wait-for-device", timeout=30)
        adb_client("disconnect", peer.address)
        # Second time the key is known: the token signature alone authorises the connection.
        again = adb_client("connect", peer.address)
        assert "connected to" in again.stdout
        adb_client("-s", peer.address, "wait-for-device", timeout=30)
        assert adb_client("-s", peer.address, "shell", "echo ok").stdout.strip() == "ok"
        assert len((root / "data/misc/adb/adb_keys").read_text().splitlines()) == 1


def test_adb_shell_package_connects_with_rsa_auth(tmp_path):
    from adb_shell.adb_device import AdbDeviceTcp
    from adb_shell.auth.keygen import keygen
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    keygen(str(tmp_path / "key"))
    signer = PythonRSASigner.FromRSAKeyPath(str(tmp_path / "key"))
    with AdbPeer(tmp_path / "device") as peer:
        dev = AdbDeviceTcp(peer.host, peer.port, default_transport_timeout_s=5)
        assert dev.connect(rsa_keys=[signer], auth_timeout_s=5)
        assert dev.shell("echo $((6 * 7))").strip() == "42"
        src = tmp_path / "f.bin"
        src.write_bytes(os.urandom(300_000))
        dev.push(str(src), "/sdcard/f.bin")
        assert dev.stat("/sdcard/f.bin")[1] == 300_000
        dev.pull("/sdcard/f.bin", str(tmp_path / "g.bin"))
        assert (tmp_path / "g.bin").read_bytes() == src.read_bytes()
        dev.close()


def test_unknown_key_without_acceptance_stays_unauthorised(tmp_path):
    from adb_shell.adb_device import AdbDeviceTcp
    from adb_shell.auth.keygen import keygen
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    keygen(str(tmp_path / "key"))
    signer = PythonRSASigner.FromRSAKeyPath(str(tmp_path / "key"))
    with AdbPeer(tmp_path / "device", accept_new_keys=False) as peer:
        dev = AdbDeviceTcp(peer.host, peer.port, default_transport_timeout_s=1)
        with pytest.raises(Exception):
            dev.connect(rsa_keys=[signer], auth_timeout_s=1)
        dev.close()


def test_message_header_roundtrip_and_bad_magic():
    raw = p.encode(p.Message(p.A_WRTE, 7, 9, b"abc"))
    assert p.decode_header(raw[:24]) == (p.A_WRTE, 7, 9, 3, p.checksum(b"abc"))
    broken = raw[:20] + struct.pack("<I", 0)
    with pytest.raises(p.ProtocolError):
        p.decode_header(broken)


def test_android_pubkey_parses_to_the_same_rsa_key(tmp_path):
    from adb_shell.auth.keygen import keygen
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    keygen(str(tmp_path / "key"))
    priv = load_pem_private_key((tmp_path / "key").read_bytes(), password=None)
    parsed = p.parse_android_pubkey((tmp_path / "key.pub").read_bytes())
    assert parsed.public_numbers() == priv.public_key().public_numbers()


def test_sync_session_handles_requests_split_anywhere(tmp_path):
    root = tmp_path
    session = SyncSession(lambda path: root / path.lstrip("/"))
    body = os.urandom(70_000)
    stream = b"SEND" + struct.pack("<I", len("/a/b.bin,33261")) + b"/a/b.bin,33261"
    stream += b"DATA" + struct.pack("<I", 65536) + body[:65536]
    stream += b"DATA" + struct.pack("<I", len(body) - 65536) + body[65536:]
    stream += b"DONE" + struct.pack("<I", 1_700_000_000)
    replies = b"".join(session.feed(stream[i : i + 777]) for i in range(0, len(stream), 777))
    assert replies == b"OKAY" + struct.pack("<I", 0)
    assert (root / "a/b.bin").read_bytes() == body
    assert (root / "a/b.bin").stat().st_mode & 0o777 == 0o755
    stat = session.feed(b"STAT" + struct.pack("<I", 8) + b"/a/b.bin")
    assert stat[:4] == b"STAT" and struct.unpack("<3I", stat[4:16])[1] == len(body)
    assert session.feed(b"STAT" + struct.pack("<I", 4) + b"/nah")[4:] == b"\0" * 12
    assert session.feed(b"QUIT" + b"\0" * 4) == b"" and session.done


def test_sandbox_refuses_paths_that_escape(tmp_path):
    peer = AdbPeer(tmp_path / "dev")
    try:
        assert peer.to_local("/data/local/tmp/x") == (tmp_path / "dev/data/local/tmp/x").resolve()
        assert peer.to_local("/../../etc/passwd") == (tmp_path / "dev/etc/passwd").resolve()
    finally:
        peer.stop()


def test_peer_cli_starts_and_serves(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.equipment.adb_peer", "--port", str(port), "--root",
                             str(tmp_path / "dev")], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(p.encode(p.Message(p.A_CNXN, p.A_VERSION, p.MAX_PAYLOAD, b"host::\0")))
            reply = s.recv(24)
            command, arg0, *_ = p.decode_header(reply)
            assert (command, arg0) == (p.A_AUTH, p.AUTH_TOKEN)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _read_msg(sock: socket.socket) -> p.Message:
    header = b""
    while len(header) < 24:
        chunk = sock.recv(24 - len(header))
        assert chunk, "peer closed the connection"
        header += chunk
    command, arg0, arg1, length, _ = p.decode_header(header)
    data = b""
    while len(data) < length:
        data += sock.recv(length - len(data))
    return p.Message(command, arg0, arg1, data)


def test_negotiated_payload_size_and_flow_control(tmp_path):
    """A host that offers 4 KiB payloads gets WRTEs of at most 4 KiB, one in flight until it says OKAY."""
    with AdbPeer(tmp_path / "dev", require_auth=False) as peer, socket.create_connection((peer.host, peer.port), 5) as s:
        s.sendall(p.encode(p.Message(p.A_CNXN, 0x01000000, 4096, b"host::features=\0")))
        cnxn = _read_msg(s)
        assert cnxn.name == "CNXN" and cnxn.arg1 == 4096 and cnxn.data.startswith(b"device::")
        s.sendall(p.encode(p.Message(p.A_OPEN, 11, 0, b"shell:head -c 10000 /dev/zero\0")))
        okay = _read_msg(s)
        assert (okay.name, okay.arg1) == ("OKAY", 11)
        received = 0
        while True:
            msg = _read_msg(s)
            if msg.name == "CLSE":
                break
            assert msg.name == "WRTE" and len(msg.data) <= 4096 and msg.arg1 == 11
            received += len(msg.data)
            if received < 10000:  # no second WRTE may arrive before our OKAY (CLSE may follow the last one)
                s.settimeout(0.3)
                with pytest.raises(socket.timeout):
                    s.recv(1, socket.MSG_PEEK)
                s.settimeout(5)
            s.sendall(p.encode(p.Message(p.A_OKAY, 11, okay.arg0)))
        assert received == 10000


def test_bad_checksum_from_an_old_host_drops_the_link(tmp_path):
    with AdbPeer(tmp_path / "dev", require_auth=False) as peer, socket.create_connection((peer.host, peer.port), 5) as s:
        s.sendall(p.encode(p.Message(p.A_CNXN, 0x01000000, 4096, b"host::\0")))
        assert _read_msg(s).name == "CNXN"
        raw = bytearray(p.encode(p.Message(p.A_OPEN, 1, 0, b"shell:echo hi\0")))
        raw[16:20] = struct.pack("<I", 12345)  # wrong checksum
        s.sendall(bytes(raw))
        s.settimeout(5)
        assert s.recv(24) == b""  # closed
