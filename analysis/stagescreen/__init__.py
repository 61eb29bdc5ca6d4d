"""StageScreen core: study spec, designs, statistics, stage planning, result store, reports.

The core is pure Python over pandas/statsmodels; it never imports kopf, kubernetes,
subprocess or torch (a test checks), so the operator image and the analysis Jobs can share it
and the local executor can call it in-process.
"""

__version__ = "0.1.0"
