"""Reports for people: CSV tables with formula-looking cells quoted (``tables``), the rejected
catalog rows as CSV or XLSX for the catalog team (``rejections``), the run-results JSON of
``--results`` (``run_results``), and one self-contained HTML page of a plan or a run
(``html``, drawn with ``charts`` inside the frame of ``page``).

Imports catalog, state (the run log, for a run's page) and below; must not import the API
client, publish, pipeline, orders, market, alerts or cli.
"""
