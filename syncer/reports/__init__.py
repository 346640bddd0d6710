"""Reports for people: CSV tables with formula-looking cells quoted (``tables``), the
rejected catalog rows as CSV or XLSX for the catalog team (``rejections``), the HTML page of
a plan or of the last run (``html``, drawn with ``page`` and the SVG ``charts``) and the
run-results JSON of ``--results`` (``run_results``).

``html`` reads the state, read-only, for the budget and the last run; the package must not
import the API client, publish, pipeline, orders, market, alerts or cli.
"""
