"""The convergence study of issue #9 (see docs/study.md): ``python benchmarks/study.py --help``.

The study lives in ``benchmarks/convergence/``, beside this script, outside the dimsum package.
"""

import sys

from convergence.driver import main

if __name__ == "__main__":
    sys.exit(main())
