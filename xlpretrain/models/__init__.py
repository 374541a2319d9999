"""Pure Flax linen modules: no training logic lives here."""
