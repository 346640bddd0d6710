"""The market as buyers see it: the BackBox reads of our listings, which listings a pass reads
first and the market report (``view``), and the public shop through a scraper API (``shop``).

Imports planning, reports, backmarket and below; must not import publish, pipeline, orders,
alerts or cli (a pass as a recorded run, and the configured stores' report, are
``syncer.pipeline.market``'s).
"""
