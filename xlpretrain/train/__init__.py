"""Training: the loop, the evaluation protocol, checkpoints and logs. Nothing objective-specific."""
