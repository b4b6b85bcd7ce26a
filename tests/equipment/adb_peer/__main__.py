"""``python -m tests.equipment.adb_peer --port P --root DIR``: serve a loopback ADB device until Ctrl-C."""
from __future__ import annotations

import argparse
import logging
import sys

from tests.equipment.adb_peer import AdbPeer, write_benchmark_model_stub


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.equipment.adb_peer", allow_abbrev=False,
        description="A loopback ADB device (adbd side of the wire protocol) whose shell runs in a sandbox folder. "
        "Connect with `adb connect 127.0.0.1:PORT` or an etf device of transport 'tcp'.",
    )
    ap.add_argument("--port", type=int, default=5555, help="TCP port on 127.0.0.1 (0 picks a free one)")
    ap.add_argument("--root", required=True, help="sandbox folder standing in for the device's / (created)")
    ap.add_argument("--no-auth", action="store_true", help="skip RSA key authentication")
    ap.add_argument("--stub", metavar="PATH", help="also write a benchmark_model stand-in script to PATH")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if args.stub:
        print(f"benchmark_model stand-in: {write_benchmark_model_stub(args.stub)}", flush=True)
    try:
        peer = AdbPeer(args.root, port=args.port, require_auth=not args.no_auth)
    except OSError as exc:
        print(f"adb_peer: error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"adb peer listening on {peer.address}, sandbox {peer.root}", flush=True)
    try:
        peer.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        peer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
