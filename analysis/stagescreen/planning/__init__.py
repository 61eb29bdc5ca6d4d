"""Planning: run ids, plans, the one ranking, the planner, pricing, the results table and a
run's environment. Each stage kind's own planning lives in `stagescreen.kinds`.
"""
