"""The study: its model (spec), reading it (parse), the checks across its sections, and the
files generated from the model (the CRD, docs/spec.md, the chart's schema).
"""
