"""Audits: the design (split, membership, training plan, canaries), the models' training
and caching, the scoring engine and the results. Nothing here writes results; the
workflows do."""
