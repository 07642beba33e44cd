"""Search: the ranked objective, the TE-NAS/MicroNAS pruning search, and score-table search."""
