"""The engine's shared values and helpers: an offer and its published fields (``offers``),
the snapshot's values (``snapshot``: an entry, an acknowledgement, a failure), a BackBox
reading (``competition``), Back Market's fixed vocabularies (``vocabulary``), the secrets
registry that scrubs every log and message (``secrets``), logging, crash points.

Imports nothing of syncer (not even ``syncer.errors``, which imports ``secrets``): every
other package may import it. ``vocabulary`` is the one module the emulator shares.
"""
