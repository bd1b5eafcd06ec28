"""``act-zoo ops``: which point-op backend runs each op here, per device, and why."""

from __future__ import annotations

import argparse
import json


def _rows(devices: list[str]) -> list[dict[str, str]]:
    from ..ops._backend import op_table

    return [{"device": dev, "op": op, "backend": backend, "why": why}
            for dev in devices for op, backend, why in op_table(dev)]


def _cmd_ops(args: argparse.Namespace) -> int:
    import torch

    from ..ops._backend import ENV_VAR, backend_info, requested_backend

    devices = list(args.device) if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    backends = [{"name": b.name, "available": b.unavailable is None, "reason": b.unavailable or "",
                 "auto_devices": ",".join(b.devices or ("any",)), "description": b.description}
                for b in backend_info()]
    requested = requested_backend()
    rows = _rows(devices)
    if args.json:
        print(json.dumps({"requested": requested, "backends": backends, "ops": rows}, indent=2))
        return 0
    names = "|".join(b["name"] for b in backends)
    print(f"requested: {requested}  (choose with {ENV_VAR}=auto|{names} or act_zoo.ops.use_backend)")
    print("backends:")
    for b in backends:
        state = "available" if b["available"] else f"unavailable: {b['reason']}"
        print(f"  {b['name']:<10} auto on {b['auto_devices']:<6} {b['description']}; {state}")
    if not args.device and not torch.cuda.is_available():
        print("cuda: no CUDA device here (pass --device cuda to see what would run there)")
    header = ("device", "op", "backend", "why")
    table = [header, *[(r["device"], r["op"], r["backend"], r["why"]) for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("ops", parents=[common], help="show which point-op backend runs here and why",
                       description="Show the point-op backends (torch, compiled, ...), whether each loads "
                                   "here, and which one runs every op on each device, with the reason. "
                                   "Loading a backend the first time may compile it (a few seconds).")
    s.add_argument("--device", action="append", metavar="DEVICE",
                   help="device type to resolve for (repeatable; default: cpu, plus cuda when present)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=_cmd_ops)
