"""`python -m bench [NAME ...] [--quick] [--update-docs]`: run benchmarks, print their figures.

Without names every benchmark in `bench.BENCHMARKS` runs, in order. With
`--update-docs` each one's generated section of docs/benchmarks.md is
replaced by this run's figures. Run from the repository root (as `make bench`
does).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys

from bench import BENCHMARKS
from bench.procs import set_affinity
from bench.report import Section, update_docs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    parser.add_argument(
        "--update-docs", action="store_true", help="write the figures into docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    sections: list[Section] = []
    cpus = os.sched_getaffinity(0)
    for name in args.names or list(BENCHMARKS):
        module = importlib.import_module(BENCHMARKS[name])
        print(f"== {name}", flush=True)
        # Each benchmark pins this process to its load core: the next one must find every
        # core again, or it cannot pin anything (its figures would be noise).
        set_affinity(cpus)
        section: Section = module.run(quick=args.quick)
        print(section.markdown, flush=True)
        sections.append(section)
    if args.update_docs:
        command = shlex.join(["python", "-m", "bench", *(argv or sys.argv[1:])])
        update_docs(sections, command)
        print("docs/benchmarks.md updated", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
