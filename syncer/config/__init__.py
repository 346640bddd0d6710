"""The configuration: a TOML file, ``SYNCER_*`` environment variables and ``.env``, read
into checked models (``settings.Settings`` and its ``sections``, ``stores``, ``alerts``);
tokens and secrets are read only when asked and registered as secrets.

Imports only ``syncer.core`` and ``syncer.errors``: every stage may read settings.
"""
