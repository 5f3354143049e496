"""WSGI entry point of the relabscope dashboard, for gunicorn or any WSGI server.

    RELABSCOPE_RUNS=/data/runs RELABSCOPE_AUTH=user:pass gunicorn -w 1 --threads 8 -b 127.0.0.1:8050 apps.wsgi:server

See apps/README.md.
"""

import os

from relabscope.dashboard import create_app

app = create_app(os.environ.get("RELABSCOPE_RUNS", "runs").split(os.pathsep),
                 auth=os.environ.get("RELABSCOPE_AUTH") or None)
server = app.server
