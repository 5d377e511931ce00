"""Sub-commands of ``station`` (see station/cli.py for the contract)."""
