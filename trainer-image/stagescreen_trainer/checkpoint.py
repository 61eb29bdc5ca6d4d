"""Checkpoints: everything a run needs to go on as if it had never stopped.

One object, `state.pt`, written atomically to CHECKPOINT_URI (a local folder or s3://), so a
kill at any moment leaves either the previous checkpoint or the new one, never a torn one. It
holds the model, the optimiser, the data cursor and buffer, the RNG states, the step, the
training seconds already charged to the budget, the curve and the log so far, and the config
fingerprint: a checkpoint of a different run is refused, not silently resumed.
"""

from __future__ import annotations

import io
from typing import Any

import torch

from stagescreen_trainer.storage import Location

STATE_KEY = "state.pt"


def save_checkpoint(location: Location, state: dict[str, Any]) -> int:
    """Write the checkpoint; returns its size in bytes."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    location.put_bytes(STATE_KEY, data)
    return len(data)


def load_checkpoint(location: Location) -> dict[str, Any] | None:
    """The last checkpoint, or None when the run has none yet."""
    if not location.exists(STATE_KEY):
        return None
    state: dict[str, Any] = torch.load(
        io.BytesIO(location.get_bytes(STATE_KEY)), map_location="cpu", weights_only=True
    )
    return state
