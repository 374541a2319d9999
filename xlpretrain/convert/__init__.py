"""Import of checkpoints written by other implementations."""
