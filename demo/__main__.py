"""python -m demo OUT_DIR: write a generated demo catalogue."""

import argparse
import logging
import time
from pathlib import Path

from .catalogue import generate

log = logging.getLogger("demo")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("out", type=Path, help="catalogue folder to write")
    parser.add_argument("--count", type=int, default=300, help="number of items")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )

    started = time.perf_counter()
    rows = generate(args.out, args.count, args.seed)
    log.info(
        "wrote a demo catalogue of %d drawn items to %s in %.1f s",
        len(rows),
        args.out,
        time.perf_counter() - started,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
