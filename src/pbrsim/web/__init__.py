"""The explorer: a local web app (``pbrsim serve``) for trying contract designs without writing YAML (docs/web.md).

It sits at the end of the pipeline beside ``cli/``: it may use every stage, and only the ``serve`` command
imports it. Starlette and uvicorn come with the optional extra ``pip install 'pbrsim[web]'``.
"""
