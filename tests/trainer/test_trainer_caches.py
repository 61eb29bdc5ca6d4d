"""The trainer under a read-only root filesystem: with HOME unwritable and only
STAGESCREEN_CACHE given, as the Job gives it, torch.compile's caches land under the cache
folder and the run succeeds compiled."""

from __future__ import annotations

from pathlib import Path

from trainer_support import Prepared, read_record, run_trainer, tiny_env

from stagescreen_contract.caches import cache_environment


def test_a_compiled_run_with_home_unwritable_keeps_its_caches_under_stagescreen_cache(
    quickstart: Prepared, tmp_path: Path
) -> None:
    # No user can create a folder under a regular file, root included (the tests run as root,
    # for whom a chmod 0555 folder stays writable).
    (tmp_path / "file.txt").write_text("not a folder")
    home = tmp_path / "file.txt" / "home"
    cache, tmp, result = tmp_path / "cache", tmp_path / "tmp", tmp_path / "result"
    cache.mkdir()
    tmp.mkdir()
    env = tiny_env(
        quickstart,
        str(result),
        COMPILE="1",
        MAX_STEPS="2",
        HOME=str(home),
        STAGESCREEN_CACHE=str(cache),
        TMPDIR=str(tmp),  # Inductor's default: only its precompiled headers stay here
    )
    for name in set(cache_environment(str(cache))) - {"HOME"}:
        env.pop(name, None)  # the trainer's own defaults, not the caller's, are under test
    done = run_trainer(env, timeout=540)  # compiling on a shared CPU: 60-260 s
    assert done.returncode == 0, done.stderr
    record = read_record(result)
    assert record["status"] == "succeeded" and record["steps"] == 2
    assert record["compiled"] is True and record["compile_error"] is None
    compiled = [path for path in (cache / "inductor").rglob("*") if path.is_file()]
    assert compiled, sorted(cache.rglob("*"))
    assert {path.name for path in tmp.glob("torchinductor_*/*")} <= {"precompiled_headers"}
    assert not home.exists()
