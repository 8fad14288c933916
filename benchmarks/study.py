"""The convergence study of issue #9 (see docs/study.md): ``python benchmarks/study.py --help``."""

import sys

from dimsum_core.study.driver import main

if __name__ == "__main__":
    sys.exit(main())
