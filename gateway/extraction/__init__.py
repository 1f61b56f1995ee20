"""Extraction: the durable job queue, extractors, reconciliation and the workers that learn from exchanges."""
