"""Adapters to other ecosystems, each behind an extra (``mixerlab[hf]``: :mod:`.hf`)."""
