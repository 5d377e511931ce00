"""python-can adapter: opens one bus per gun from the station file and drives a sans-IO endpoint on it.

This is the only place (with the CLI's log reading) where the vehicle link touches python-can; the codec,
transport and session in :mod:`drivers.gbt27930` never do.
"""
