"""The Python API for notebooks and scripts (docs/python.md): result objects with short reprs, HTML
summaries, tidy tables in pounds, charts and exports, and in-memory comparisons and stress tests.

``import pbrsim`` gives the names users need (``load_scenario``, ``simulate``, ``compare``, ``stress``);
this package holds what stands behind them.
"""
