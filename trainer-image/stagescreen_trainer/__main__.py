"""`python -m stagescreen_trainer`: one training run configured by the environment (see --help)."""

from __future__ import annotations

import os
import sys

from stagescreen_contract.caches import cache_defaults

# Must precede the first CUDA allocation: fewer fragmentation OOMs on long runs.
os.environ.setdefault("PYTORCH_ALLOC_CONF", "expandable_segments:True")
# Before torch is imported: its, Inductor's and Triton's caches under STAGESCREEN_CACHE, so a
# read-only root filesystem (and HOME on it) is no obstacle to torch.compile.
os.environ.update(cache_defaults(os.environ))

from stagescreen_trainer.train import main

sys.exit(main(sys.argv[1:]))
