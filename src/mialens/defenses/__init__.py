"""Defences and their evaluation: output defences, the query monitor, DP auditing."""
