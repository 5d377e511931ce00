"""GB/T 27930-2015 (category A of the 2023 edition), the charger side, sans-IO.

``messages`` (the 22 messages), ``transport`` (J1939-21 RTS/CTS), ``transitions`` (the session's one
table), ``session`` (the charger state machine), ``attribution`` (whose fault), ``decode``/``candump``/
``cli`` (``station gbt``). Nothing here imports python-can; see docs/gbt27930.md.
"""
