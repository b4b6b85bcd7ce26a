"""A small ADB *device-side* daemon on loopback: CNXN/AUTH, OPEN/OKAY/WRTE/CLSE, ``shell:`` and ``sync:``.

It stands in for a phone's ``adbd`` in tests: Google's ``adb`` client and the ``adb_shell`` package both talk
to it. Commands run with ``/bin/sh`` in a sandbox folder; device paths under /data, /sdcard and /storage are
mapped into that folder (so ``/data/local/tmp/x`` is ``ROOT/data/local/tmp/x``), and /sys too when ``ROOT/sys``
exists.

Like a real adbd, the peer only lets in hosts whose key it was given: ``authorized_keys`` (public keys in adb's
format, or the path of an ``adb_keys``-style file) plus those in ``ROOT/data/misc/adb/adb_keys``. A host that signs
the token with another key, then offers that key with ``AUTH RSAPUBLICKEY``, gets no CNXN: it stays unauthorised,
as on a phone whose user never taps "Allow". ``accept_new_keys=True`` plays the user tapping "Always allow": an
offered key is accepted and remembered in ``ROOT/data/misc/adb/adb_keys``.
"""
from __future__ import annotations

import logging
import os
import queue
import re
import secrets
import signal
import socket
import struct
import subprocess
import threading
from pathlib import Path
from typing import Callable, Iterable, Union

from tests.equipment.adb_peer import protocol as p
from tests.equipment.adb_peer.sync import SyncSession

LOG = logging.getLogger("etf.adb_peer")
SANDBOXED_TOP_DIRS = ("data", "sdcard", "storage")


def _path_pattern(top_dirs: tuple[str, ...]) -> re.Pattern[str]:
    """Absolute paths in a shell command whose first component is one of ``top_dirs``."""
    return re.compile(r"(?<![\w.\-/~])/(%s)(?=/|\s|$|[;&|)'\"])" % "|".join(top_dirs))


_SHELL_PATH_RE = _path_pattern(SANDBOXED_TOP_DIRS)
# When the sandbox has its own sys/ folder (a test's stand-in for a phone's cpufreq and thermal files), /sys is
# mapped too; otherwise /sys is this machine's.
_SHELL_PATH_WITH_SYS_RE = _path_pattern(SANDBOXED_TOP_DIRS + ("sys",))
#: How long a hung-up shell may run its HUP trap (its cleanup) before the peer SIGKILLs what is left. Generous:
#: the trap's ``rm -rf`` must not be cut short on a loaded machine.
HANGUP_GRACE_S = 60.0
BANNER_PROPS = "ro.product.name=etf_peer;ro.product.model=ETF_ADB_peer;ro.product.device=etf_peer;"


#: ``authorized_keys``: a path to an ``adb_keys``-style file (one key per line), or the keys themselves (adb's
#: ``BASE64 user@host`` text, as in ``adbkey.pub``; a Path in the list is read as a file).
AuthorizedKeys = Union[str, os.PathLike, Iterable[Union[str, bytes, os.PathLike]]]


def read_authorized_keys(keys: AuthorizedKeys | None) -> list[bytes]:
    """The key lines of ``keys``; a malformed key is an error here rather than a silent refusal later."""
    if keys is None:
        return []
    if isinstance(keys, (str, os.PathLike)):  # an adb_keys file
        texts = [Path(keys).read_bytes()]
    else:
        texts = [Path(k).read_bytes() if isinstance(k, os.PathLike) else k if isinstance(k, bytes) else k.encode()
                 for k in keys]
    lines: list[bytes] = []
    for text in texts:
        for line in text.split(b"\0", 1)[0].splitlines():
            if line.strip():
                p.parse_android_pubkey(line)  # raises ProtocolError for a malformed key
                lines.append(line.strip())
    return lines


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("host closed the connection")
        buf += chunk
    return bytes(buf)


class Stream:
    """One open service stream. Device writes wait for the host's OKAY (one WRTE in flight, as in adbd)."""

    def __init__(self, conn: "Connection", local_id: int, remote_id: int) -> None:
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.closed = threading.Event()
        self._ready = threading.Event()
        self._ready.set()
        self.inbox: "queue.Queue[bytes | None]" = queue.Queue()

    def write(self, data: bytes) -> bool:
        """Send ``data`` to the host in max-payload WRTE messages; False once the stream or link is gone."""
        step = self.conn.max_payload
        for i in range(0, len(data), step):
            while not self._ready.wait(0.2):
                if self.closed.is_set() or self.conn.dead.is_set():
                    return False
            if self.closed.is_set():
                return False
            self._ready.clear()
            if not self.conn.send(p.Message(p.A_WRTE, self.local_id, self.remote_id, data[i : i + step])):
                return False
        return True

    def host_okay(self) -> None:
        self._ready.set()

    def close_from_device(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.conn.send(p.Message(p.A_CLSE, self.local_id, self.remote_id))
            self.conn.forget(self.local_id)

    def close_from_host(self) -> None:
        self.closed.set()
        self.inbox.put(None)
        self.on_host_close()

    def on_host_close(self) -> None:  # overridden
        pass

    def run(self) -> None:  # worker thread body, overridden
        pass


class ShellStream(Stream):
    """``shell:CMD``: run CMD (or an interactive sh) in the sandbox; stdout+stderr go back, host writes go to stdin."""

    def __init__(self, conn: "Connection", local_id: int, remote_id: int, command: str) -> None:
        super().__init__(conn, local_id, remote_id)
        self.command = command
        self.proc: subprocess.Popen[bytes] | None = None
        self._hangup_lock = threading.Lock()
        self._hung_up = False

    def run(self) -> None:
        root = self.conn.peer.root
        pattern = _SHELL_PATH_WITH_SYS_RE if (root / "sys").is_dir() else _SHELL_PATH_RE
        mapped = pattern.sub(lambda m: f"{root}/{m.group(1)}", self.command)
        argv = ["/bin/sh", "-c", mapped] if self.command.strip() else ["/bin/sh"]
        env = dict(os.environ, HOME=str(root / "data/local/tmp"), ANDROID_DATA=str(root / "data"))
        try:
            self.proc = subprocess.Popen(argv, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except OSError as exc:
            self.write(f"/system/bin/sh: {exc}\n".encode())
            self.close_from_device()
            return
        self.conn.peer.shell_started(self.conn, self.command)
        threading.Thread(target=self._pump_stdin, daemon=True).start()
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            if not self.write(chunk):
                self.hang_up()
                break
        self.proc.wait()
        self.close_from_device()

    def _pump_stdin(self) -> None:
        while True:
            data = self.inbox.get()
            if data is None or self.proc is None or self.proc.stdin is None:
                break
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                break

    def hang_up(self) -> None:
        """SIGHUP the command's process group once (as a closed terminal would); SIGKILL only a hung shell.

        Both the link's end (``on_host_close``) and a failed write reach here, often a few ms apart. A second SIGHUP
        would land while the shell runs its HUP trap and kill the trap's own commands (an ``rm -rf`` of the work
        folder, cut half way), and an early SIGKILL would do the same: the first caller hangs up, later ones return.
        """
        with self._hangup_lock:
            if self._hung_up:
                return
            self._hung_up = True
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGHUP)
            proc.wait(timeout=HANGUP_GRACE_S)
        except (ProcessLookupError, PermissionError):
            return
        except subprocess.TimeoutExpired:
            LOG.warning("shell %d ignored SIGHUP for %gs; killing it", proc.pid, HANGUP_GRACE_S)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def on_host_close(self) -> None:
        threading.Thread(target=self.hang_up, daemon=True).start()


class SyncStream(Stream):
    """``sync:``: the push/pull sub-protocol, paths mapped into the sandbox."""

    def run(self) -> None:
        session = SyncSession(self.conn.peer.to_local)
        try:
            while not session.done:
                data = self.inbox.get()
                if data is None:
                    return
                reply = session.feed(data)
                if reply and not self.write(reply):
                    return
            self.close_from_device()
        finally:
            session.close()


class Connection:
    """One host connection: handshake, then a dispatch loop; each stream has its own worker thread."""

    def __init__(self, peer: "AdbPeer", sock: socket.socket) -> None:
        self.peer = peer
        self.sock = sock
        self.dead = threading.Event()
        self.max_payload = 4096
        self.version = 0
        self.online = False
        self._token = b""
        self._send_lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._streams_lock = threading.Lock()
        self._next_id = 1

    # -- I/O -------------------------------------------------------------------------------------------------
    def send(self, msg: p.Message) -> bool:
        if self.dead.is_set():
            return False
        try:
            with self._send_lock:
                self.sock.sendall(p.encode(msg))
            return True
        except OSError:
            self.dead.set()
            return False

    def read_message(self) -> p.Message:
        command, arg0, arg1, length, crc = p.decode_header(_recv_exact(self.sock, p.HEADER.size))
        if length > max(self.max_payload, p.MAX_PAYLOAD):
            raise p.ProtocolError(f"payload of {length} bytes exceeds the maximum")
        data = _recv_exact(self.sock, length) if length else b""
        check = self.version < p.A_VERSION_SKIP_CHECKSUM if self.version else crc != 0
        if check and p.checksum(data) != crc:
            raise p.ProtocolError("payload checksum mismatch")
        return p.Message(command, arg0, arg1, data)

    def abort(self) -> None:
        """Drop the link abruptly (RST), as a pulled cable or lost Wi-Fi would."""
        self.dead.set()
        try:
            # Linger 0 makes the final close send RST; SHUT_RD wakes the reader thread, which then closes.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def forget(self, local_id: int) -> None:
        with self._streams_lock:
            self._streams.pop(local_id, None)

    # -- protocol --------------------------------------------------------------------------------------------
    def serve(self) -> None:
        try:
            while not self.dead.is_set():
                self.handle(self.read_message())
        except (OSError, ConnectionError, p.ProtocolError) as exc:
            LOG.debug("connection ended: %s", exc)
        finally:
            self.dead.set()
            with self._streams_lock:
                streams = list(self._streams.values())
                self._streams.clear()
            for stream in streams:
                stream.close_from_host()
            try:
                self.sock.close()
            except OSError:
                pass
            self.peer.connection_ended(self)

    def _send_token(self) -> None:
        self._token = secrets.token_bytes(p.TOKEN_SIZE)
        self.send(p.Message(p.A_AUTH, p.AUTH_TOKEN, 0, self._token))

    def _go_online(self) -> None:
        self.online = True
        banner = f"device::{BANNER_PROPS}features=".encode()
        self.send(p.Message(p.A_CNXN, p.A_VERSION, self.max_payload, banner))

    def handle(self, msg: p.Message) -> None:
        if msg.command == p.A_CNXN:
            self.version = min(msg.arg0, p.A_VERSION)
            self.max_payload = max(4096, min(msg.arg1, p.MAX_PAYLOAD))
            self.online = False
            if self.peer.require_auth:
                self._send_token()
            else:
                self._go_online()
            return
        if msg.command == p.A_AUTH:
            self._handle_auth(msg)
            return
        if not self.online:
            LOG.debug("ignoring %s before the connection is authorised", msg.name)
            return
        if msg.command == p.A_OPEN:
            self._handle_open(msg)
        elif msg.command in (p.A_OKAY, p.A_WRTE, p.A_CLSE):
            with self._streams_lock:
                stream = self._streams.get(msg.arg1)
            if stream is None:
                if msg.command == p.A_WRTE:  # stream already gone: tell the host
                    self.send(p.Message(p.A_CLSE, 0, msg.arg0))
                return
            if msg.command == p.A_OKAY:
                stream.host_okay()
            elif msg.command == p.A_WRTE:
                self.send(p.Message(p.A_OKAY, stream.local_id, stream.remote_id))
                stream.inbox.put(msg.data)
            else:  # the host closed the stream: acknowledge with our CLSE, as adbd does
                self.forget(stream.local_id)
                stream.close_from_host()
                self.send(p.Message(p.A_CLSE, stream.local_id, stream.remote_id))

    def _handle_auth(self, msg: p.Message) -> None:
        if msg.arg0 == p.AUTH_SIGNATURE:
            keys = self.peer.trusted_keys()
            if self._token and any(p.verify_token_signature(k, self._token, msg.data) for k in keys):
                self._go_online()
            else:
                self._send_token()  # let the host try its next key, then offer its public key
        elif msg.arg0 == p.AUTH_RSAPUBLICKEY:
            try:
                offered = p.parse_android_pubkey(msg.data)
            except p.ProtocolError as exc:
                LOG.warning("rejecting malformed public key: %s", exc)
                self.abort()
                return
            if self.peer.is_authorized(offered):
                self._go_online()
            elif self.peer.accept_new_keys:  # the user tapped "Always allow"
                self.peer.remember_key(msg.data)
                self._go_online()
            else:  # a key we were not given: no CNXN; the host stays unauthorised (adbd's pending prompt)
                self.peer.refused_keys += 1
                LOG.info("refusing a public key that is not authorised")
        else:
            raise p.ProtocolError(f"unexpected AUTH type {msg.arg0}")

    def _handle_open(self, msg: p.Message) -> None:
        service = msg.data.split(b"\0", 1)[0].decode("utf-8", "replace")
        with self._streams_lock:
            local_id = self._next_id
            self._next_id += 1
        stream: Stream
        if service.startswith("shell:"):
            stream = ShellStream(self, local_id, msg.arg0, service[len("shell:"):])
        elif service.startswith("sync:"):
            stream = SyncStream(self, local_id, msg.arg0)
        else:
            LOG.debug("refusing unsupported service %r", service)
            self.send(p.Message(p.A_CLSE, 0, msg.arg0))
            return
        with self._streams_lock:
            self._streams[local_id] = stream
        self.send(p.Message(p.A_OKAY, local_id, msg.arg0))
        threading.Thread(target=stream.run, daemon=True, name=f"adb-peer-{service[:10]}").start()


class AdbPeer:
    """The daemon: listens on ``host:port`` (0 picks a free port) and serves connections in threads.

    ``authorized_keys``: the hosts' public keys it lets in (see the module docstring); ``accept_new_keys``: accept
    and remember any offered key instead. ``drop_when`` (a regex) makes the peer drop a connection ``drop_after_s`` seconds after a matching shell
    command starts: a test's stand-in for a link that breaks mid-run; with ``vanish_on_drop`` the peer also
    stops listening, like a phone that is gone for good. Shell commands of a dropped link get SIGHUP.
    """

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0, *, require_auth: bool = True,
                 authorized_keys: AuthorizedKeys | None = None, accept_new_keys: bool = False,
                 drop_when: str | None = None, drop_after_s: float = 1.0, vanish_on_drop: bool = False) -> None:
        self.root = Path(root).resolve()
        for sub in ("data/local/tmp", "data/misc/adb", "sdcard"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.require_auth = require_auth
        self.authorized_keys = read_authorized_keys(authorized_keys)
        self.accept_new_keys = accept_new_keys
        self.refused_keys = 0  # public keys offered and refused (for tests)
        self.drop_when = re.compile(drop_when) if drop_when else None
        self.drop_after_s = drop_after_s
        self.vanish_on_drop = vanish_on_drop
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.2)  # so serve_forever notices stop() promptly
        self.host, self.port = self._listener.getsockname()[:2]
        self._connections: set[Connection] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.on_shell: Callable[[str], None] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def keys_file(self) -> Path:
        return self.root / "data/misc/adb/adb_keys"

    def to_local(self, device_path: str) -> Path:
        """Map a device path into the sandbox; refuse paths that climb out of it."""
        norm = os.path.normpath("/" + device_path.lstrip("/"))
        local = (self.root / norm.lstrip("/")).resolve()
        if local != self.root and self.root not in local.parents:
            raise ValueError(f"path escapes the sandbox: {device_path}")
        return local

    def trusted_keys(self) -> list:
        """The keys given as ``authorized_keys`` and those in the sandbox's ``adb_keys``."""
        keys = [p.parse_android_pubkey(line) for line in self.authorized_keys]
        try:
            lines = self.keys_file.read_bytes().splitlines()
        except OSError:
            return keys
        for line in lines:
            try:
                keys.append(p.parse_android_pubkey(line))
            except p.ProtocolError:
                continue
        return keys

    def is_authorized(self, key) -> bool:
        return any(k.public_numbers() == key.public_numbers() for k in self.trusted_keys())

    def remember_key(self, blob: bytes) -> None:
        line = blob.split(b"\0", 1)[0].strip()
        with self._lock:
            existing = self.keys_file.read_bytes().splitlines() if self.keys_file.exists() else []
            if line not in existing:
                with self.keys_file.open("ab") as fh:
                    fh.write(line + b"\n")

    def shell_started(self, conn: Connection, command: str) -> None:
        if self.on_shell:
            self.on_shell(command)
        if self.drop_when and self.drop_when.search(command):
            timer = threading.Timer(self.drop_after_s, self._drop, args=(conn,))
            timer.daemon = True
            timer.start()

    def _drop(self, conn: Connection) -> None:
        if self.vanish_on_drop:  # the phone is gone for good: refuse reconnections too
            self._stopping.set()
            try:
                self._listener.close()
            except OSError:
                pass
        conn.abort()

    def connection_ended(self, conn: Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def serve_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, sock)
            with self._lock:
                self._connections.add(conn)
            threading.Thread(target=conn.serve, daemon=True, name="adb-peer-conn").start()

    def start(self) -> "AdbPeer":
        self._thread = threading.Thread(target=self.serve_forever, daemon=True, name="adb-peer")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            conn.abort()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> "AdbPeer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
