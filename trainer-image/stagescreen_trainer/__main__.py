"""`python -m stagescreen_trainer`: one training run configured by the environment (see --help)."""

from __future__ import annotations

import os
import sys

# Must precede the first CUDA allocation: fewer fragmentation OOMs on long runs.
os.environ.setdefault("PYTORCH_ALLOC_CONF", "expandable_segments:True")

from stagescreen_trainer.train import main

sys.exit(main(sys.argv[1:]))
