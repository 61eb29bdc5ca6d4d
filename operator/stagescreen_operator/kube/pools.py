"""The cluster's pools: what a platform team knows about its GPU node pools (node labels,
taints, the GPU resource name, a Kueue queue, peak FLOP/s), given once in the chart's
`pools` value, so a researcher's study can say `pools: [{name: a100}]` and land there.

A study's pool is completed from the cluster's pool of the same name: every field the study
leaves unset comes from the cluster, every field it sets wins.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from stagescreen.study.spec import Pool, Study


def cluster_pools(text: str | None) -> tuple[Pool, ...]:
    """The pools of STAGESCREEN_POOLS (JSON, as the chart renders `pools`)."""
    return tuple(Pool.model_validate(item) for item in json.loads(text or "[]"))


def with_cluster_pools(study: Study, pools: Sequence[Pool]) -> Study:
    """The study with each of its pools completed from the cluster's pool of that name."""
    known: Mapping[str, Pool] = {pool.name: pool for pool in pools}
    completed = []
    for pool in study.spec.pools:
        base = known.get(pool.name)
        if base is None:
            completed.append(pool)
            continue
        fields: dict[str, Any] = {
            name: getattr(base, name) for name in base.model_fields_set - pool.model_fields_set
        }
        completed.append(pool.model_copy(update=fields))
    spec = study.spec.model_copy(update={"pools": completed})
    return study.model_copy(update={"spec": spec})
