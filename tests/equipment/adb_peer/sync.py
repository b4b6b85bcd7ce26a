"""The device side of the ``sync:`` file-transfer sub-protocol (AOSP ``SYNC.TXT``): STAT, LIST, SEND, RECV, QUIT.

A pure byte-stream state machine: feed it whatever the host wrote (requests may be split across or packed into
ADB WRTE messages) and it returns the response bytes; the filesystem work goes through a path mapper.
"""
from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import Callable

SYNC_DATA_MAX = 64 * 1024
_U32 = struct.Struct("<I")
_REQ = struct.Struct("<4sI")


def _resp(ident: bytes, *words: int) -> bytes:
    return ident + b"".join(_U32.pack(w & 0xFFFFFFFF) for w in words)


def _fail(message: str) -> bytes:
    data = message.encode()
    return b"FAIL" + _U32.pack(len(data)) + data


class SyncSession:
    """One ``sync:`` stream. ``feed(bytes) -> bytes`` to send back; ``done`` once the host sent QUIT."""

    def __init__(self, to_local: Callable[[str], Path]) -> None:
        self._to_local = to_local
        self._buf = bytearray()
        self.done = False
        # SEND state
        self._send_path: Path | None = None
        self._send_mode = 0
        self._send_file = None
        self._send_error: str | None = None

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        while not self.done:
            step = self._step()
            if step is None:
                break
            out += step
        return bytes(out)

    # -- request parsing -------------------------------------------------------------------------------------
    def _take(self, n: int) -> bytes | None:
        if len(self._buf) < n:
            return None
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        return chunk

    def _step(self) -> bytes | None:
        if len(self._buf) < 8:
            return None
        ident, length = _REQ.unpack_from(self._buf, 0)
        if self._send_path is not None:  # inside a SEND: DATA chunks then DONE
            if ident == b"DATA":
                if length > SYNC_DATA_MAX:
                    self._abort_send()
                    self.done = True
                    return _fail(f"DATA chunk too large ({length})")
                if len(self._buf) < 8 + length:
                    return None
                self._take(8)
                self._write_chunk(self._take(length) or b"")
                return b""
            if ident == b"DONE":
                self._take(8)
                return self._finish_send(mtime=length)
            self._abort_send()
            self.done = True
            return _fail(f"unexpected {ident!r} during SEND")
        if ident == b"QUIT":
            self._take(8)
            self.done = True
            return b""
        if ident not in (b"STAT", b"LIST", b"SEND", b"RECV"):
            self.done = True
            return _fail(f"unknown sync request {ident!r}")
        if length > 1024:
            self.done = True
            return _fail("path too long")
        if len(self._buf) < 8 + length:
            return None
        self._take(8)
        path = (self._take(length) or b"").decode("utf-8", "replace")
        return {b"STAT": self._stat, b"LIST": self._list, b"SEND": self._start_send, b"RECV": self._recv}[ident](path)

    # -- requests --------------------------------------------------------------------------------------------
    def _stat(self, path: str) -> bytes:
        try:
            st = os.stat(self._to_local(path))
        except (OSError, ValueError):
            return _resp(b"STAT", 0, 0, 0)
        return _resp(b"STAT", st.st_mode, st.st_size, int(st.st_mtime))

    def _list(self, path: str) -> bytes:
        out = bytearray()
        try:
            local = self._to_local(path)
            names = sorted(os.listdir(local))
        except (OSError, ValueError):
            names, local = [], None
        for name in names:
            try:
                st = os.lstat(local / name)  # type: ignore[operator]
            except OSError:
                continue
            raw = name.encode()
            out += _resp(b"DENT", st.st_mode, st.st_size, int(st.st_mtime), len(raw)) + raw
        out += _resp(b"DONE", 0, 0, 0, 0)
        return bytes(out)

    def _recv(self, path: str) -> bytes:
        try:
            data = self._to_local(path).read_bytes()
        except (OSError, ValueError) as exc:
            return _fail(f"open failed: {getattr(exc, 'strerror', None) or exc}")
        out = bytearray()
        for i in range(0, len(data), SYNC_DATA_MAX):
            chunk = data[i : i + SYNC_DATA_MAX]
            out += b"DATA" + _U32.pack(len(chunk)) + chunk
        out += _resp(b"DONE", 0)
        return bytes(out)

    def _start_send(self, spec: str) -> bytes:
        path, _, mode_text = spec.rpartition(",")
        if not path:
            path, mode_text = spec, "33188"  # 0o100644
        try:
            mode = int(mode_text)
        except ValueError:
            mode = 0o100644
        self._send_mode = mode
        self._send_error = None
        try:
            local = self._to_local(path)
            self._send_path = local
            if local.is_dir():
                raise IsADirectoryError(21, "Is a directory")
            local.parent.mkdir(parents=True, exist_ok=True)
            self._send_file = open(local, "wb")
        except (OSError, ValueError) as exc:
            self._send_path = self._send_path or Path("/nonexistent")
            self._send_file = None
            self._send_error = f"couldn't create file: {getattr(exc, 'strerror', None) or exc}"
        return b""

    def _write_chunk(self, chunk: bytes) -> None:
        if self._send_file is not None:
            try:
                self._send_file.write(chunk)
            except OSError as exc:
                self._send_error = f"write failed: {exc.strerror}"
                self._abort_send(keep_state=True)

    def _finish_send(self, mtime: int) -> bytes:
        path, error = self._send_path, self._send_error
        if self._send_file is not None:
            self._send_file.close()
        self._send_file = None
        self._send_path = None
        if error:
            return _fail(error)
        assert path is not None
        try:
            os.chmod(path, stat.S_IMODE(self._send_mode) or 0o644)
            if mtime:
                os.utime(path, (mtime, mtime))
        except OSError:
            pass
        return _resp(b"OKAY", 0)

    def _abort_send(self, keep_state: bool = False) -> None:
        if self._send_file is not None:
            self._send_file.close()
            self._send_file = None
            if self._send_path is not None:
                self._send_path.unlink(missing_ok=True)
        if not keep_state:
            self._send_path = None

    def close(self) -> None:
        """Drop a half-received file (the host went away mid-SEND)."""
        self._abort_send()
