"""DP auditing: canaries' scores to epsilon lower bounds (one run, many runs) and estimates."""
