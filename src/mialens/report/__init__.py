"""Reports: metrics.json, the per-sample table and the self-contained HTML report."""
