"""Compare the runs of sweeps without any service: `python compare.py SWEEP_DIR [MORE ...] [--out DIR]`.

Prints a table sorted by best validation PSNR (with each run's status: finished, interrupted or
failed, and its folder) and writes comparison.md, comparison.csv, psnr_curves.png and
psnr_vs_<axis>.png into the first directory (or --out); files that exist are refused unless --overwrite.
"""

import argparse
import sys
from pathlib import Path

from sr_experiments.cli import first_line
from sr_experiments.outputs import WriteError
from sr_experiments.tools.compare import compare, unfinished_runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="sweep directories (train.py -m), runs or metrics.json files")
    parser.add_argument("--out", type=Path, default=None, help="where to write the table and plots (default: the first path)")
    parser.add_argument("--overwrite", action="store_true", help="replace comparison files that already exist")
    args = parser.parse_args(argv)
    try:
        table, written = compare(args.paths, args.out, args.overwrite)
    except WriteError as e:  # a full disk while writing: nothing partial was left
        print(f"compare.py: {first_line(e)}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:
        print(f"compare.py: {first_line(e)}", file=sys.stderr)
        return 2
    print(table)
    unfinished = unfinished_runs(args.paths)
    if unfinished:
        print(f"{len(unfinished)} runs have no metrics.json (unfinished or failed): {', '.join(map(str, unfinished))}")
    plotted = any(p.name == "psnr_curves.png" for p in written)  # not without matplotlib
    if plotted and not any(p.name.startswith("psnr_vs_") for p in written):
        print("(no psnr_vs_<axis>.png: no override with numeric values varies between the runs)")
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
