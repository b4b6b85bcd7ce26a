"""``python -m tests.equipment.adb_peer --port P --root DIR [--key PUB ...]``: serve a loopback ADB device until
Ctrl-C, letting in only the keys it is given (default: etf's and this user's adb client key)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tests.equipment.adb_peer import AdbPeer, write_benchmark_model_stub
from tests.equipment.adb_peer.protocol import ProtocolError


def default_keys() -> list[Path]:
    """etf's public key (made now if missing) and Google's adb client key when this user has one."""
    from android_bench.adb_device import adb_key_path, load_signer

    load_signer()
    keys = [Path(str(adb_key_path()) + ".pub")]
    google = Path("~/.android/adbkey.pub").expanduser()
    return keys + [google] if google.is_file() else keys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.equipment.adb_peer", allow_abbrev=False,
        description="A loopback ADB device (adbd side of the wire protocol) whose shell runs in a sandbox folder. "
        "Connect with `adb connect 127.0.0.1:PORT` or an etf device of transport 'tcp'.",
    )
    ap.add_argument("--port", type=int, default=5555, help="TCP port on 127.0.0.1 (0 picks a free one)")
    ap.add_argument("--root", required=True, help="sandbox folder standing in for the device's / (created)")
    ap.add_argument("--no-auth", action="store_true", help="skip RSA key authentication")
    ap.add_argument("--key", metavar="PUB", action="append", default=[],
                    help="a public key (adbkey.pub) or adb_keys file to let in; repeatable. Default: etf's key "
                    "($ETF_ADB_KEY.pub or ~/.config/etf/adbkey.pub, made if missing) and Google's adb client key "
                    "(~/.android/adbkey.pub) when present")
    ap.add_argument("--accept-new-keys", action="store_true",
                    help="let in and remember any key a host offers (the user tapping \"Always allow\")")
    ap.add_argument("--stub", metavar="PATH", help="also write a benchmark_model stand-in script to PATH")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if args.stub:
        print(f"benchmark_model stand-in: {write_benchmark_model_stub(args.stub)}", flush=True)
    keys = [Path(k).expanduser() for k in args.key] or default_keys()
    try:
        peer = AdbPeer(args.root, port=args.port, require_auth=not args.no_auth, authorized_keys=keys,
                       accept_new_keys=args.accept_new_keys)
    except OSError as exc:
        where = exc.filename or f"127.0.0.1:{args.port}"
        print(f"adb_peer: error: {where}: {exc.strerror}", file=sys.stderr)
        return 2
    except ProtocolError as exc:
        print(f"adb_peer: error: bad public key: {exc}", file=sys.stderr)
        return 2
    print(f"adb peer listening on {peer.address}, sandbox {peer.root}", flush=True)
    if not args.no_auth:
        print("authorised keys: " + (", ".join(map(str, keys)) or "none"), flush=True)
    try:
        peer.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        peer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
