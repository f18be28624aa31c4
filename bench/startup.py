"""Start-up time of the command line: `python bench/startup.py [--runs 7]`.

Times, in fresh processes and interleaved rounds (the machine is noisy), `import sr_experiments`,
`train.py --help`, `train.py --cfg job`, a shell-completion query, and, for scale, `import lightning`
(what each of them took before Lightning was imported lazily). Prints the median and range of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sr_experiments.hardware import cpu_model

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "import sr_experiments": [sys.executable, "-c", "import sr_experiments"],
    "train.py --help": [sys.executable, "train.py", "--help"],
    "train.py --cfg job": [sys.executable, "train.py", "--cfg", "job"],
    "completion query (TAB)": [sys.executable, "train.py", "-sc", "query=bash"],
    "import lightning (reference)": [sys.executable, "-c", "import lightning"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    env = {**os.environ, "COMP_LINE": "python train.py mod", "COMP_POINT": "19"}
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(args.runs):
        for name, cmd in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - start)
    print(f"{cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {args.runs} interleaved runs")
    print("| command | median (s) | range (s) |\n|---|---:|---:|")
    for name, ts in times.items():
        print(f"| `{name}` | {statistics.median(ts):.2f} | {min(ts):.2f}-{max(ts):.2f} |")


if __name__ == "__main__":
    main()
