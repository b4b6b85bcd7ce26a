"""ADB wire format (AOSP ``protocol.txt``): the 24-byte message header, commands, and RSA key auth helpers."""
from __future__ import annotations

import base64
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

A_SYNC = 0x434E5953
A_CNXN = 0x4E584E43
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_AUTH = 0x48545541
A_STLS = 0x534C5453

#: Protocol version that lets both ends skip the payload checksum (Android 9 and later).
A_VERSION_SKIP_CHECKSUM = 0x01000001
A_VERSION = A_VERSION_SKIP_CHECKSUM
#: Largest payload this peer accepts (adbd's MAX_PAYLOAD).
MAX_PAYLOAD = 1024 * 1024

AUTH_TOKEN = 1
AUTH_SIGNATURE = 2
AUTH_RSAPUBLICKEY = 3
TOKEN_SIZE = 20

HEADER = struct.Struct("<6I")
NAMES = {A_SYNC: "SYNC", A_CNXN: "CNXN", A_OPEN: "OPEN", A_OKAY: "OKAY", A_CLSE: "CLSE", A_WRTE: "WRTE",
         A_AUTH: "AUTH", A_STLS: "STLS"}


class ProtocolError(Exception):
    """The other end sent something that is not valid ADB."""


@dataclass(frozen=True)
class Message:
    """One ADB message: command, two arguments, payload."""

    command: int
    arg0: int
    arg1: int
    data: bytes = b""

    @property
    def name(self) -> str:
        return NAMES.get(self.command, f"0x{self.command:08x}")


def checksum(data: bytes) -> int:
    """The legacy payload checksum: the byte sum modulo 2**32."""
    return sum(data) & 0xFFFFFFFF


def encode(msg: Message) -> bytes:
    """Header + payload bytes for ``msg`` (checksum always filled, which every peer version accepts)."""
    header = HEADER.pack(msg.command, msg.arg0, msg.arg1, len(msg.data), checksum(msg.data),
                         msg.command ^ 0xFFFFFFFF)
    return header + msg.data


def decode_header(header: bytes) -> tuple[int, int, int, int, int]:
    """Validate a 24-byte header; return (command, arg0, arg1, length, checksum)."""
    if len(header) != HEADER.size:
        raise ProtocolError(f"short header ({len(header)} bytes)")
    command, arg0, arg1, length, crc, magic = HEADER.unpack(header)
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic for command 0x{command:08x}")
    if command not in NAMES:
        raise ProtocolError(f"unknown command 0x{command:08x}")
    return command, arg0, arg1, length, crc


# --- RSA keys in Android's format ---------------------------------------------------------------------------
# An adb public key is base64 of: u32 len (words), u32 n0inv, u32 n[len] (LE), u32 rr[len] (LE), u32 exponent,
# followed by " user@host". The host signs the 20-byte token as a pre-hashed SHA-1 digest (PKCS#1 v1.5).


def parse_android_pubkey(blob: bytes) -> rsa.RSAPublicKey:
    """Parse an ``AUTH RSAPUBLICKEY`` payload (or an ``adb_keys`` line) into an RSA public key."""
    text = blob.split(b"\0", 1)[0].strip()
    b64 = text.split(b" ", 1)[0]
    try:
        raw = base64.b64decode(b64, validate=True)
    except ValueError as exc:
        raise ProtocolError("public key is not base64") from exc
    if len(raw) < 12:
        raise ProtocolError("public key too short")
    (words,) = struct.unpack_from("<I", raw, 0)
    if words not in (64, 96, 128) or len(raw) != 4 + 4 + 8 * words + 4:
        raise ProtocolError("public key has an unexpected size")
    n = int.from_bytes(raw[8 : 8 + 4 * words], "little")
    (e,) = struct.unpack_from("<I", raw, 8 + 8 * words)
    return rsa.RSAPublicNumbers(e, n).public_key()


def verify_token_signature(key: rsa.RSAPublicKey, token: bytes, signature: bytes) -> bool:
    """True when ``signature`` is the host's signature of ``token`` under ``key``."""
    try:
        key.verify(signature, token, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
        return True
    except (InvalidSignature, ValueError):
        return False
