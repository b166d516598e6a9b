"""Entry point of `python -m benchmarks` (see benchmarks/harness.py and benchmarks/README.md).

Deliberately thin: Dask's worker processes (spawned) re-import this module as `__mp_main__`, so it
imports nothing heavy and runs only under the `__main__` guard.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from benchmarks.harness import main

    sys.exit(main())
