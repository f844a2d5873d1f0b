"""Defences: output defences, sample-aware training, the query monitor, DP auditing, and
each defence's privacy-utility point (the defence workflow runs their audits)."""
