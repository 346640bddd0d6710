"""The engine's shared values and helpers: an offer and its published fields (``offers``),
a BackBox reading (``competition``), what the snapshot remembers of an offer and the
acknowledgements and failures that move it (``snapshot``), Back Market's fixed vocabularies
(``vocabulary``), the secrets registry that scrubs every log and message (``secrets``),
logging (``logs``) and crash points (``crashpoints``).

Imports nothing of syncer (not even ``syncer.errors``, which imports ``secrets``): every
other package may import it. ``vocabulary`` is the one module the emulator shares.
"""
