"""Outcomes: the typed stage outcome, the analysis that writes it, the manifest (Table 1) and
the study's status.
"""
