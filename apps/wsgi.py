"""WSGI entry point of the relabscope dashboard, for gunicorn or any WSGI server.

    RELABSCOPE_RUNS=/data/runs RELABSCOPE_AUTH_FILE=/etc/relabscope/reviewers \
        gunicorn -w 1 --threads 8 -b 127.0.0.1:8050 apps.wsgi:server

The address a WSGI server binds is not known here, so the app counts as shared: without
``RELABSCOPE_AUTH`` (USER:PASS) or ``RELABSCOPE_AUTH_FILE`` (reviewers, htpasswd-style) the
review page takes no decisions (docs/review.md, "Threat model"). See apps/README.md.
"""

import os

from relabscope.dashboard import create_app

app = create_app(os.environ.get("RELABSCOPE_RUNS", "runs").split(os.pathsep),
                 auth=os.environ.get("RELABSCOPE_AUTH") or None,
                 auth_file=os.environ.get("RELABSCOPE_AUTH_FILE") or None)
server = app.server
