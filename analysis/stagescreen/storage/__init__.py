"""Storage: the key layout, the local and S3 stores, publishing outcomes, JSON-safe values."""
