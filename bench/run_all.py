"""Run the hybridbus side-by-side benchmark suite.

python bench/run_all.py [--scenarios ...] [--duration S] [--servers hybridbus,nats-server,mosquitto]
python bench/run_all.py --report               # run, then write BENCHMARKS.md and docs/benchmarks.png
python bench/run_all.py --from-json PATH ...   # write them from saved results, no run
"""

import sys
from pathlib import Path

# Make `bench.harness` importable however this file is started (repo root or bench/).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
