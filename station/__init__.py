"""Station controller: decides how much power each gun, the battery and the grid carry, every cycle.

Layer rule (docs/architecture.md): ``station`` never imports pymodbus, python-can or an MQTT client;
those live in ``drivers``. ``hil`` is never imported by ``station`` or ``drivers``.
"""

__version__ = "0.1.0"
