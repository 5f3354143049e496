"""``create_app``: the Dash app behind ``relabscope serve``.

One page per view, chosen by the URL path; the run (and a sample, epochs...) by query
parameters, so every view has a link that reopens it: ``/flipflops?run=scn-c-20``,
``/sample?run=scn-c-20&sample=123``,
``/compare?run=scn-20&against=scn-c-20``. The run list on the left shows every run found under
the roots, newest first, and runs that cannot be read with their error. A tick every few
seconds checks whether the shown run committed a new epoch; if so the page's views
redraw (a run still training updates without a restart).

Security: only runs the registry discovered can be named, and only their samples' images
served (see ``registry`` and ``images``); who may read and decide, host names, origins and
framing are ``security``'s rules, on every route, Dash's own included.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import dash
from dash import Input, Output, State, dcc, html, no_update
from waitress import serve as serve_wsgi

from relabscope.analysis.projection import MAP_POINTS
from relabscope.dashboard import compactness, compare, embedding_map, flipflops, ids, overview, review, sample, security
from relabscope.dashboard.components import describe_error, error_card
from relabscope.dashboard.context import Context
from relabscope.dashboard.images import register_route
from relabscope.dashboard.inputs import parse_search
from relabscope.dashboard.registry import RunRegistry, RunUnavailable
from relabscope.dashboard.security import is_loopback
from relabscope.models.spec import ModelSpec
from relabscope.dashboard.users import Users
from relabscope.errors import RelabscopeError

if TYPE_CHECKING:
    from relabscope.runlog.images import ImagesArg

#: path segment -> page module (layout(ctx, run_id, params), register(app, ctx), TITLE)
PAGES = {overview.PATH: overview, flipflops.PATH: flipflops, sample.PATH: sample, embedding_map.PATH: embedding_map,
         compactness.PATH: compactness, compare.PATH: compare, review.PATH: review}
AUTH_ENV = "RELABSCOPE_AUTH"
AUTH_FILE_ENV = "RELABSCOPE_AUTH_FILE"
#: requests served at once: a page fires up to 7 callbacks together, and a second user
#: or a polling map should not wait behind them
SERVER_THREADS = 16

_CSS = """
body{font-family:Inter,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#f6f7f9}
a{color:#2a6fb0;text-decoration:none} a:hover{text-decoration:underline}
.top{display:flex;align-items:center;gap:1.5em;padding:.6em 1.2em;background:#1f2a37;color:#fff}
.top .brand{font-weight:700;font-size:1.1em} .top a{color:#d6e4f5} .top a.active{color:#fff;font-weight:600}
.body{display:flex;align-items:flex-start}
.side{width:250px;min-width:250px;padding:.8em;box-sizing:border-box;font-size:.9em}
.side .run{display:block;padding:.35em .5em;border-radius:4px;margin-bottom:2px;word-break:break-all}
.side .run.active{background:#dce8f6;font-weight:600} .side .run .sub{color:#666;font-size:.85em;font-weight:400}
.side .run.bad{color:#a33}
.main{flex:1;padding:.8em 1.2em;min-width:0}
.card{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:.7em 1em;margin:.4em 0}
.error-card{border-color:#e5a3a3;background:#fff6f6} .err-title{font-weight:600;color:#a33} .err-msg{font-family:monospace;font-size:.9em;white-space:pre-wrap}
.note-card{color:#555}
.warn-card{border-color:#e8c26e;background:#fff9e8} .warn-title{font-weight:600;color:#8a5a00} .warn-card ul{margin:.3em 0 0;padding-left:1.3em}
.num-row{display:flex;flex-wrap:wrap;gap:.6em} .num-card{min-width:150px} .num{font-size:1.5em;font-weight:600} .lbl{color:#555;font-size:.85em}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:.8em}
.cell{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:.4em;min-width:0}
.dash-table-container .cell{background:none;border:0;border-radius:0;padding:0}
.controls{display:flex;flex-wrap:wrap;align-items:center;gap:.8em;margin:.5em 0}
.muted{color:#666;font-size:.9em} .chip{font-size:.85em;color:#444}
.btn{padding:.3em .8em;border:1px solid #aab;border-radius:4px;background:#fff;cursor:pointer}
.thumb{width:96px;height:auto;image-rendering:pixelated;border:1px solid #ccc}
.big-thumb{width:224px;height:auto;image-rendering:pixelated;border:1px solid #ccc;float:left;margin:0 1em .5em 0}
.dash-cell img{width:40px;height:auto;image-rendering:pixelated}
kbd{font-family:inherit;font-size:.85em;border:1px solid #aab;border-bottom-width:2px;border-radius:3px;padding:0 .35em;background:#fff}
.rv-keys{font-size:.9em;line-height:2} .rv-keys-title{font-weight:600} .rv-key{margin-right:1.1em;white-space:nowrap}
.rv-grid{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}
.rv-tile{width:172px;box-sizing:border-box;padding:5px;background:#fff;border:1px solid #d5d9de;border-radius:6px;font-size:12.5px;line-height:1.4;outline:none}
.rv-tile:focus{border-color:#2a6fb0;box-shadow:0 0 0 3px #2a6fb0}
.rv-img{display:block;width:160px;height:auto;image-rendering:pixelated;margin-bottom:3px}
.rv-line{overflow:hidden;text-overflow:ellipsis;white-space:nowrap} .rv-head{font-weight:600} .rv-score{color:#555}
.rv-sw{display:inline-block;width:9px;height:9px;border-radius:2px;margin-right:5px}
.rv-timeline{display:flex;gap:1px;height:10px;margin:4px 0} .rv-timeline span{flex:1 1 0;min-width:1px}
.rv-badge{padding:1px 5px;border-radius:3px;overflow-wrap:anywhere}
.rv-undecided{background:#f1f2f4;color:#555} .rv-keep{background:#e3f2e1;color:#1e5c1b} .rv-relabel{background:#e0ebf7;color:#174a7c}
.rv-ambiguous{background:#fbf0d6;color:#6e4a00} .rv-drop{background:#e6e6e6;color:#333}
.rv-msg{margin-top:3px;padding:2px 5px;border-radius:3px;background:#fff6f6;border:1px solid #e5a3a3;color:#a33;font-size:12px}
"""


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``USER:PASS`` -> (user, password); None or "" -> None. Raises RelabscopeError for a
    value without a user or a password."""
    if value is None or value == "":
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise RelabscopeError("--auth expects USER:PASS (both non-empty)")
    return user, password


def sign_in(auth: tuple[str, str] | str | None, auth_file: str | os.PathLike | None) -> Users | None:
    """Who may sign in: ``auth`` (one USER:PASS) or ``auth_file`` (htpasswd-style, several
    reviewers: ``relabscope.dashboard.users``), not both; None: nobody has to."""
    if auth and auth_file:
        raise RelabscopeError("--auth and --auth-file name the reviewers twice: give one")
    if auth_file:
        return Users.from_file(auth_file)
    pair = parse_auth(auth) if isinstance(auth, str) else auth
    return Users.single(*pair) if pair else None


def create_app(roots: Iterable[str | os.PathLike] | str | os.PathLike = ("runs",), *,
               auth: tuple[str, str] | str | None = None, auth_file: str | os.PathLike | None = None,
               host: str | None = None, allow_hosts: Iterable[str] = (), refresh_seconds: float = 5.0,
               max_points: int | None = MAP_POINTS, rescan_seconds: float = 5.0,
               url_base_pathname: str | None = None, images: Mapping[str, ImagesArg] | None = None,
               model: ModelSpec | None = None) -> dash.Dash:
    """The dashboard over every run found under ``roots``.

    ``auth``: ("user", "password") or "user:password", or ``auth_file``: an htpasswd-style
    file of reviewers (``relabscope.dashboard.users``), for HTTP basic auth on every route
    (neither: no auth). ``host``: the address the server binds (None: unknown, as under a
    WSGI server); with ``allow_hosts`` it decides who may read and write
    (``relabscope.dashboard.security``: without auth, decisions only on a loopback server
    reached directly). ``refresh_seconds``: how often a page checks its run for new epochs
    (0: never). ``max_points``: cap of points in embedding maps (None: every training
    sample; WebGL draws 287,651 of them, the UMAP of that many takes minutes on 2 cores).
    ``images``: run id -> image source for runs whose log records none (key "": every such
    run; see ``RunRegistry``). ``model``: the model Grad-CAM explains for runs of a model
    relabscope did not build (``--model``; a run's recorded ``model_factory`` otherwise).
    """
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    registry = RunRegistry(list(roots), rescan_seconds=rescan_seconds, images=images)
    users = sign_in(auth, auth_file)
    kwargs: dict[str, Any] = {}
    if url_base_pathname:
        kwargs["url_base_pathname"] = url_base_pathname
    # update_title=None: no "Updating..." browser title (Dash documents None; its stubs say str)
    app = dash.Dash(__name__, title="relabscope", update_title=None,  # type: ignore[arg-type]
                    suppress_callback_exceptions=True,
                    serve_locally=True, assets_folder=os.path.join(os.path.dirname(__file__), "_no_assets"),
                    **kwargs)
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + _CSS + "</style>")
    ctx = Context(registry, prefix=app.config.requests_pathname_prefix, refresh_seconds=refresh_seconds,
                  max_points=max_points, model=model)
    app.relabscope = ctx  # type: ignore[attr-defined]  # the app's context, for tests and embedding
    server = app.server
    security.install(server, security.Security(host, users, security.allowed_hosts(allow_hosts)))
    register_route(server, ctx.images, app.config.routes_pathname_prefix)

    app.layout = html.Div([
        dcc.Location(id=ids.URL, refresh="callback-nav"),
        dcc.Store(id=ids.LIVE_VERSION),
        dcc.Interval(id=ids.TICK, interval=max(1.0, refresh_seconds) * 1000, disabled=refresh_seconds <= 0),
        html.Div(id=ids.TOPNAV, className="top"),
        html.Div([html.Div(id=ids.RUNS_NAV, className="side"), html.Div(id=ids.PAGE, className="main")],
                 className="body"),
    ])
    _register_shell(app, ctx)
    for page in PAGES.values():
        page.register(app, ctx)
    return app


# ---------------------------------------------------------------------- routing
def page_of(pathname: str | None, prefix: str) -> str:
    """The page key of a URL path (its first segment after the app's prefix)."""
    path = pathname or "/"
    if path.startswith(prefix):
        path = path[len(prefix):]
    return path.strip("/").split("/")[0]


def resolve_run(ctx: Context, params: dict[str, str]) -> str | None:
    """The run a URL names (must be a registered id), or the newest when it names none;
    raises RunUnavailable for a name the registry does not know."""
    run_id = params.get("run")
    if run_id is None:
        return ctx.registry.newest()
    if run_id not in ctx.registry:
        raise RunUnavailable(f"unknown run {run_id[:200]!r}")
    return run_id


def render_page(ctx: Context, pathname: str | None, search: str | None) -> Any:
    """The page for a URL: its layout, or an error card (unknown page or run, unreadable
    run); never raises."""
    key = page_of(pathname, ctx.prefix)
    page = PAGES.get(key)
    if page is None:
        return error_card(f"no page {key[:100]!r}; pages: " + ", ".join(p.TITLE for p in PAGES.values()),
                          "Page not found")
    params = parse_search(search)
    try:
        run_id = resolve_run(ctx, params)
    except RunUnavailable as exc:
        return error_card(str(exc), "Run not found")
    if run_id is None:
        roots = ", ".join(str(r) for r in ctx.registry.roots)
        return error_card(f"no run (a folder holding run.h5) under {roots}", "No runs yet")
    try:
        ctx.run(run_id)
        return page.layout(ctx, run_id, params)
    except Exception as exc:
        return error_card(describe_error(exc), f"Run {run_id} cannot be shown")


def run_list(ctx: Context, current: str | None, page: str) -> list:
    items = [html.Div("Runs", className="muted")]
    for info in ctx.registry.infos():
        classes = "run" + (" active" if info.id == current else "") + (" bad" if info.error else "")
        if info.error:
            sub = info.error
        else:
            sub = f"{info.method} · {info.dataset} · {info.epochs} ep · {info.status}"
        items.append(dcc.Link([html.Div(info.id), html.Div(sub, className="sub")],
                              href=ctx.href(page if page in PAGES else "", info.id), className=classes,
                              title=info.error or ""))
    if len(items) == 1:
        items.append(html.Div("none found", className="muted"))
    return items


def nav(ctx: Context, current: str | None, page: str) -> list:
    links = [html.Span("relabscope", className="brand")]
    for key, mod in PAGES.items():
        links.append(dcc.Link(mod.TITLE, href=ctx.href(key, current), className="active" if key == page else ""))
    return links


def _register_shell(app: dash.Dash, ctx: Context) -> None:
    @app.callback(Output(ids.PAGE, "children"), Output(ids.TOPNAV, "children"),
                  Output(ids.LIVE_VERSION, "data", allow_duplicate=True),
                  Input(ids.URL, "pathname"), Input(ids.URL, "search"), prevent_initial_call="initial_duplicate")
    def _route(pathname, search):
        params = parse_search(search)
        try:
            current = resolve_run(ctx, params)
        except RunUnavailable:
            current = None
        key = page_of(pathname, ctx.prefix)
        version = ctx.registry.version(current) if current else None
        return render_page(ctx, pathname, search), nav(ctx, current, key), version

    @app.callback(Output(ids.RUNS_NAV, "children"), Input(ids.URL, "pathname"), Input(ids.URL, "search"),
                  Input(ids.TICK, "n_intervals"))
    def _runs(pathname, search, _tick):
        try:
            current = resolve_run(ctx, parse_search(search))
        except RunUnavailable:
            current = None
        return run_list(ctx, current, page_of(pathname, ctx.prefix))

    @app.callback(Output(ids.LIVE_VERSION, "data", allow_duplicate=True), Input(ids.TICK, "n_intervals"),
                  State(ids.URL, "search"), State(ids.LIVE_VERSION, "data"), prevent_initial_call=True)
    def _tick(_n, search, seen):
        try:
            current = resolve_run(ctx, parse_search(search))
        except RunUnavailable:
            return no_update
        if current is None:
            return no_update
        version = ctx.registry.version(current)
        return no_update if version == seen else version


def serve(roots: Sequence[str | os.PathLike], *, host: str = "127.0.0.1", port: int = 8050,
          auth: tuple[str, str] | str | None = None, auth_file: str | os.PathLike | None = None,
          allow_hosts: Iterable[str] = (), page: str = "", max_points: int | None = MAP_POINTS,
          log=print, images: Mapping[str, ImagesArg] | None = None, model: ModelSpec | None = None) -> None:
    """Serve the dashboard on waitress, a production WSGI server, until Ctrl-C.

    Waitress rather than Flask's development server: that one warns every user not to use
    it in production, and a dashboard shared on a lab machine is exactly that. ``auth`` and
    ``auth_file`` None read ``RELABSCOPE_AUTH`` and ``RELABSCOPE_AUTH_FILE``; ``page`` is the
    path (and query) the printed URL opens; the rest as in :func:`create_app`. Proxy headers
    reach the app (waitress would strip them): they are not trusted, only noticed, so a
    request through a proxy counts as shared.
    """
    if auth is None and auth_file is None:
        auth, auth_file = os.environ.get(AUTH_ENV) or None, os.environ.get(AUTH_FILE_ENV) or None
    app = create_app(roots, auth=auth, auth_file=auth_file, host=host, allow_hosts=allow_hosts,
                     max_points=max_points, images=images, model=model)
    registry = app.relabscope.registry
    signed = auth or auth_file
    if not is_loopback(host):
        log(f"relabscope: warning: serving on {host}, reachable from other machines"
            + ("" if signed else "; anyone who can reach it sees the runs and the review page takes no decisions "
               "(add --auth USER:PASS or --auth-file FILE)"))
    shown = "[" + host + "]" if ":" in host else host
    log(f"relabscope: {len(registry.ids())} run(s) under {', '.join(str(r) for r in registry.roots)}; "
        f"open http://{shown}:{port}/{page.lstrip('/')}")
    serve_wsgi(app.server, host=host, port=port, threads=SERVER_THREADS, ident="relabscope",
               clear_untrusted_proxy_headers=False)
