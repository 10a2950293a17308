"""Wall time of `sslc --version` and `sslc --help` beside `python -c pass`, and whether they
import torch.

Baseline: `python -c pass`, the interpreter's own start-up on this machine; the CLI's cost
is what it adds. Each command runs as a fresh subprocess (as a user types it), `--rounds`
times, interleaved so a busy neighbour slows all alike; the best round is reported. The
bar (issue 10): each answers in under 1 s of wall time, without importing torch (checked
through `-X importtime`); exit 1 otherwise.

    python benchmarks/bench_cli_startup.py
    python benchmarks/bench_cli_startup.py --rounds 3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

BAR_S = 1.0
COMMANDS: dict[str, list[str]] = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "sslc --version": [sys.executable, "-m", "ssl_core.cli", "--version"],
    "sslc --help": [sys.executable, "-m", "ssl_core.cli", "--help"],
}


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def imports_torch(cmd: list[str]) -> bool:
    out = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], check=True, capture_output=True, text=True)
    return any(line.rstrip().endswith("| torch") for line in out.stderr.splitlines())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    best = dict.fromkeys(COMMANDS, float("inf"))
    for _ in range(args.rounds):
        for name, cmd in COMMANDS.items():
            best[name] = min(best[name], wall(cmd))
    base = best["python -c pass (baseline)"]
    ok = True
    print(f"{'command':28s} {'wall s':>7s} {'- baseline':>10s}  torch imported")
    for name, cmd in COMMANDS.items():
        torch_loaded = imports_torch(cmd)
        print(f"{name:28s} {best[name]:7.3f} {best[name] - base:10.3f}  {'yes' if torch_loaded else 'no'}")
        if name.startswith("sslc") and (best[name] >= BAR_S or torch_loaded):
            ok = False
    print(f"bar: each sslc command under {BAR_S:.1f} s without importing torch: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
