"""``relabscope serve``: a Dash app over every run under some folders.

``create_app(roots, auth=...)`` builds it (``app.server`` is the Flask WSGI app);
``RunRegistry`` is what it may show. Modules: ``registry`` (run discovery and opening),
``images`` (the sample-image route), ``context`` (shared caches and URLs), ``components``
(cards, safe figures), ``ids`` (every component id), ``inputs`` (parsing what a URL, a
control or a click gave a page; table cells), ``security`` and ``users`` (who may write,
and the reviewers), and one module per page (``overview``, ``flipflops``, ``sample``,
``embedding_map``, ``compactness``, ``compare``, ``sweeps``, ``review``), each with plain
functions the tests call and a ``register(app, ctx)`` that wires them up.
``harness`` calls the callbacks as the browser does (tests and benchmarks/dashboard_load.py).
"""

from relabscope.dashboard.app import create_app, serve
from relabscope.dashboard.registry import RunRegistry, RunUnavailable

__all__ = ["create_app", "serve", "RunRegistry", "RunUnavailable"]
