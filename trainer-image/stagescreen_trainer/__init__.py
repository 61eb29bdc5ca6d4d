"""StageScreen trainer: an autoresearch-style GPT micro-pretraining loop with a wall-clock budget.

It imports nothing else of this project: it meets the operator only through the run contract
(environment in, result.json / curve.parquet / log.txt out).
"""

__version__ = "0.1.0"
