"""``etf-devices``: list the devices etf can benchmark on (this CPU plus the TOML config) and check each."""
from __future__ import annotations

import json

from rich.table import Table

from android_bench.device_config import all_devices, default_config_path
from etf.args import Parser, existing_file
from etf.common import cli_entry, out_console


@cli_entry("etf-devices")
def main(argv: list[str] | None = None) -> int:
    ap = Parser(
        prog="etf-devices", allow_abbrev=False,
        description="List the devices etf can benchmark on (local plus the TOML config) and check each is reachable.",
        epilog="Configure phones in the devices TOML; see android_bench/README.md.",
    )
    ap.add_argument("--config", default=None, type=existing_file, help=f"devices TOML (default: $ETF_DEVICES or {default_config_path()})")
    ap.add_argument("--json", action="store_true", help="print a JSON list")
    args = ap.parse_args(argv)
    devices = all_devices(args.config)
    rows = []
    for dev in devices:
        status = dev.check()
        rows.append({**dev.describe(), "reachable": status.ok, "status": status.detail})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"etf devices ({args.config or default_config_path()})")
    for col in ("name", "kind", "address", "threads", "cpu mask", "reachable", "status"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["name"], row["kind"], str(row.get("address") or "-"), str(row.get("threads")),
                      str(row.get("cpu_mask") or "-"), "[green]yes[/green]" if row["reachable"] else "[red]no[/red]",
                      row["status"])
    out_console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
