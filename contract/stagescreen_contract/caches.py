"""Where a run's caches go: every folder the trainer, torch, Inductor, Triton and the CUDA
driver write to, under one writable root (`STAGESCREEN_CACHE`).

A training Job runs with a read-only root filesystem, so HOME in the image (/home/trainer)
cannot be written, and each library's default cache under it would fail: Triton builds its
CUDA launcher with the C compiler and keeps it and every compiled kernel under
`~/.triton/cache`; the CUDA driver keeps JIT-compiled PTX under `~/.nv/ComputeCache`; torch
keeps NVRTC kernels and extensions under `$XDG_CACHE_HOME/torch`. Inductor keeps its
compiled graphs and kernels with the rest (its default is `$TMPDIR/torchinductor_<user>`,
where it still puts its precompiled C++ headers whatever the variables say: TMPDIR must be
writable too, as the Job's /tmp emptyDir is). The operator's Job sets every variable below to
its folder on the Job's writable `/cache` volume; the trainer sets any of them that is absent
whenever `STAGESCREEN_CACHE` is given, so the image is safe however it is run. matplotlib's
MPLCONFIGDIR is not among them: nothing in the trainer imports it.
"""

from __future__ import annotations

from collections.abc import Mapping

CACHE_ROOT = "STAGESCREEN_CACHE"
"""The variable naming the writable root; the trainer's own cache (the measured peak FLOP/s)
lives directly in it."""

_FOLDERS = {
    "HOME": "",  # anything else that writes under ~ (~/.config, ~/.local)
    "XDG_CACHE_HOME": ".cache",  # torch's NVRTC kernel cache and extensions build folder
    "TORCH_HOME": ".cache/torch",  # torch.hub and downloaded weights
    "TORCHINDUCTOR_CACHE_DIR": "inductor",  # compiled graphs, autotuning, C++ kernels
    "TRITON_HOME": "",  # Triton's ~/.triton (dumps, overrides) becomes <root>/.triton
    "TRITON_CACHE_DIR": ".triton/cache",  # Triton's launcher and kernels
    "CUDA_CACHE_PATH": ".nv/ComputeCache",  # the driver's JIT cache of PTX
}


def cache_environment(root: str) -> dict[str, str]:
    """Each cache variable and its folder under `root` (HOME is the root itself: it exists,
    being the mounted volume, so nothing has to create it)."""
    base = root.rstrip("/")
    return {name: f"{base}/{folder}" if folder else base for name, folder in _FOLDERS.items()}


def cache_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """The cache variables to add to `environ`: those it lacks, under its STAGESCREEN_CACHE;
    none without one (then every library keeps its own default). A variable already given,
    HOME included (the image sets it), is left as it is."""
    root = environ.get(CACHE_ROOT)
    if not root:
        return {}
    return {name: path for name, path in cache_environment(root).items() if name not in environ}
