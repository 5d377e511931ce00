"""Hardware-in-the-loop: plant physics, device simulators speaking the real protocols, scenarios and the
offline simulator. Never imported by ``station`` or ``drivers``."""
