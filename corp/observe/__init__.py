"""What a run shows while and after it runs: the per-round record (``rounds.jsonl``) and the
W&B content built from it. Observation only: nothing here feeds back into a decision."""
