"""Reports for people: CSV tables with formula-looking cells quoted (``tables``) and the
rejected catalog rows as CSV or XLSX for the catalog team (``rejections``).

Must not import state, the API client, publish, pipeline, orders, market, alerts or cli.
"""
