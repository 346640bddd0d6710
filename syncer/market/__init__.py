"""The market as buyers see it: the BackBox reads of our listings (``view``) and the public
shop through a scraper API (``shop``).

Must not import publish, orders, alerts or cli. ``view`` still builds its client and plan
through ``syncer.pipeline`` inside its functions (an ignored import in the contracts).
"""
