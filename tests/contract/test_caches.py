"""Every cache a run writes lives under one writable root: the folders of the cache variables,
and the trainer's defaults for those not given."""

from __future__ import annotations

import pytest

from stagescreen_contract.caches import CACHE_ROOT, cache_defaults, cache_environment


def test_every_cache_variable_is_a_folder_under_the_root_and_home_is_the_root() -> None:
    folders = cache_environment("/cache/")
    assert folders["HOME"] == "/cache"
    assert {"XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"} <= set(folders)
    assert all(path == "/cache" or path.startswith("/cache/") for path in folders.values())
    # Triton's own default under TRITON_HOME is the folder given explicitly
    assert folders["TRITON_CACHE_DIR"] == f"{folders['TRITON_HOME']}/.triton/cache"


@pytest.mark.parametrize(
    ("environ", "added"),
    [
        ({}, set()),  # no root: every library keeps its default
        ({CACHE_ROOT: ""}, set()),
        ({CACHE_ROOT: "/c"}, set(cache_environment("/c"))),
        # the image sets HOME; what is given is kept
        ({CACHE_ROOT: "/c", "HOME": "/home/trainer"}, set(cache_environment("/c")) - {"HOME"}),
        (
            {CACHE_ROOT: "/c", "HOME": "/h", "TRITON_CACHE_DIR": "/t"},
            set(cache_environment("/c")) - {"HOME", "TRITON_CACHE_DIR"},
        ),
    ],
)
def test_the_trainer_adds_only_the_variables_not_given(
    environ: dict[str, str], added: set[str]
) -> None:
    defaults = cache_defaults(environ)
    assert set(defaults) == added
    root = environ.get(CACHE_ROOT, "")
    assert all(defaults[name] == cache_environment(root)[name] for name in defaults)
