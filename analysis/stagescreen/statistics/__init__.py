"""The statistics: effect families, the pooled budget model, condition means, retention, power
and simulated studies. Pure: numbers in, typed records out.
"""
