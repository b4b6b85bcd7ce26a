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
    """Run Google's adb client against a private ADB server port and HOME; kill that server afterwards.

    The server is started up front so that its key pair exists: ``adb_client.public_key`` is
    ``HOME/.android/adbkey.pub``, the key a peer must be given to let this client in.
    """
    server_port = _free_port()
    home = tmp_path / "home"
    env = dict(os.environ, HOME=str(home), ADB_VENDOR_KEYS="")
    home.mkdir()

    def adb(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([ADB, "-P", str(server_port), *args], capture_output=True, text=True, env=env,
                              timeout=timeout)

    adb("start-server")
    adb.public_key = home / ".android/adbkey.pub"
    assert adb.public_key.exists(), "adb start-server made no key pair"
    yield adb
    adb("kill-server", timeout=30)


def _keygen(path: Path):
    """A fresh adb key pair at ``path``/``path.pub``; returns adb_shell's signer for it."""
    from adb_shell.auth.keygen import keygen
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    keygen(str(path))
    return PythonRSASigner.FromRSAKeyPath(str(path))


@pytest.mark.adb
@needs_adb
def test_google_adb_client_shell_push_pull_roundtrip(tmp_path, adb_client):
    root = tmp_path / "device"
    with AdbPeer(root, authorized_keys=adb_client.public_key) as peer:
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

        # The client's key was authorised up front: it signed the token, offered no key, nothing was remembered.
        assert peer.refused_keys == 0 and not (root / "data/misc/adb/adb_keys").exists()


@pytest.mark.adb
@needs_adb
def test_google_adb_client_reconnects_with_a_signature(tmp_path, adb_client):
    root = tmp_path / "device"
    with AdbPeer(root, accept_new_keys=True) as peer:  # the user taps "Always allow" on the first connection
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

    signer = _keygen(tmp_path / "key")
    with AdbPeer(tmp_path / "device", authorized_keys=[tmp_path / "key.pub"]) as peer:
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


def test_authorized_keys_come_as_a_file_or_as_key_texts(tmp_path):
    _keygen(tmp_path / "a")
    _keygen(tmp_path / "b")
    a, b = (tmp_path / "a.pub").read_text(), (tmp_path / "b.pub").read_text()
    (tmp_path / "adb_keys").write_text(a.strip() + "\n" + b.strip() + "\n")  # adbd's adb_keys: one key a line
    for given in (str(tmp_path / "adb_keys"), tmp_path / "adb_keys", [a, b.encode()], [tmp_path / "a.pub", b]):
        peer = AdbPeer(tmp_path / "dev", authorized_keys=given)
        try:
            assert [k.public_numbers() for k in peer.trusted_keys()] == [
                p.parse_android_pubkey(x.encode()).public_numbers() for x in (a, b)]
        finally:
            peer.stop()
    with pytest.raises(p.ProtocolError):
        AdbPeer(tmp_path / "dev", authorized_keys=["not a key"])


@pytest.mark.adb
@needs_adb
def test_a_key_the_peer_was_not_given_is_refused(tmp_path, adb_client, monkeypatch):
    """A real adbd lets in authorised keys only: etf's transport and Google's adb, each with an unknown key, get
    no CNXN (etf reports it cannot reach the phone; adb sees the device unauthorised)."""
    from adb_shell.adb_device import AdbDeviceTcp

    from android_bench.adb_device import load_signer

    _keygen(tmp_path / "trusted")
    monkeypatch.setenv("ETF_ADB_KEY", str(tmp_path / "etf/adbkey"))  # etf's own key: not the trusted one
    with AdbPeer(tmp_path / "device", authorized_keys=tmp_path / "trusted.pub") as peer:
        online: list[str] = []
        peer.on_shell = online.append
        dev = AdbDeviceTcp(peer.host, peer.port, default_transport_timeout_s=2)
        with pytest.raises(Exception):  # signs with etf's key (refused), offers it (refused), times out
            dev.connect(rsa_keys=[load_signer()], auth_timeout_s=2)
        dev.close()
        assert peer.refused_keys == 1

        connect = adb_client("connect", peer.address)  # TCP connects; the transport stays unauthorised
        assert "failed" in connect.stdout + connect.stderr or connect.returncode == 0
        echo = adb_client("-s", peer.address, "shell", "echo", "let-me-in", timeout=60)
        assert echo.returncode != 0 and "let-me-in" not in echo.stdout
        assert "unauthorized" in echo.stdout + echo.stderr + adb_client("devices").stdout
        assert peer.refused_keys >= 2 and online == []  # no shell ever ran
        assert not (tmp_path / "device/data/misc/adb/adb_keys").exists()  # nothing was remembered


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
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]),
                                     HOME=str(tmp_path / "home"), ETF_ADB_KEY=str(tmp_path / "etf/adbkey")))
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line
        # By default it lets in etf's key (made now) and no other.
        assert proc.stdout.readline().strip() == f"authorised keys: {tmp_path / 'etf/adbkey.pub'}"
        assert (tmp_path / "etf/adbkey.pub").exists()
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
