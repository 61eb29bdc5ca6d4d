"""The Markdown report, its sections and figures, and the number formatting they share."""
