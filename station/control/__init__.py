"""The control cycle: the loop runner and (later) the per-cycle decision wiring."""
