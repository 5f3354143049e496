"""The ``relabscope`` command: argument parsing only; the work is in the Python API.

Errors a user can cause print one line (``relabscope: error: ...``) and exit non-zero.
The options of ``train`` and ``sweep`` are made from the setting specs
(``relabscope.config.SPECS``). Each command imports its own stack when it runs, so
``relabscope train`` needs neither dash nor plotly, ``relabscope serve`` loads no torch,
and ``--version`` and ``--help`` load none of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlencode

import click

from relabscope import __version__
from relabscope.analysis.export import export_suspects, import_labelstudio, suspect_rows
from relabscope.analysis.projection import MAP_POINTS
from relabscope.analysis.projection import PROJECTIONS
from relabscope.analysis.run import Run
from relabscope.config import SPECS, read_toml, resolve
from relabscope.data.labelstudio import RESOLVE
from relabscope.errors import RelabscopeError
from relabscope.methods import default_sweep
from relabscope.models.spec import ModelSpec
from relabscope.rundir import holds_run
from relabscope.runlog.check import check_log
from relabscope.runlog.images import image_source
from relabscope.settings import Spec
from relabscope.sweep.manifest import GRID_KEYS

if TYPE_CHECKING:
    from relabscope.sweep.table import Select

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class _Group(click.Group):
    """Turns RelabscopeError, an operating-system error and Ctrl-C into one line and an exit
    code. Under torchrun every rank's line names the rank, and any other error is one line
    too (a traceback per rank buries the cause): ``relabscope --traceback`` (or
    RELABSCOPE_TRACEBACK=1) prints the traceback instead."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RelabscopeError as exc:
            _fail(ctx, f"error: {exc}", exc.exit_code)
        except KeyboardInterrupt:
            _fail(ctx, "interrupted", 130)
        except OSError as exc:  # the system refused a file operation (a path under a file, a full disk ...)
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(ctx, f"error: {where}{exc.strerror or exc}", 1)
        except Exception as exc:
            if rank_label() is None or ctx.params.get("traceback"):
                raise  # a programming error in one process: its traceback is the useful report
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            _fail(ctx, f"error: {type(exc).__name__}: {text} (relabscope --traceback ... prints the traceback)", 1)


def rank_label() -> str | None:
    """"rank R of W" when torchrun started this process with more than one rank, else None."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return f"rank {os.environ.get('RANK', '0')} of {size}" if size > 1 else None


def _fail(ctx: click.Context, message: str, code: int) -> None:
    rank = rank_label()
    click.echo(f"relabscope: {message}" if rank is None else f"relabscope: {rank}: {message}", err=True)
    ctx.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="relabscope")
@click.option("--traceback", is_flag=True, envvar="RELABSCOPE_TRACEBACK",
              help="On an unexpected error under torchrun, print its traceback (default: one line per rank).")
def main(traceback: bool) -> None:
    """Train noisy-label facial-expression models and see what relabelling does to them."""


def _dataset_option(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any] | None:
    if not values:
        return None
    out = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw
    return out


def _list_of(item: type) -> Callable[[click.Context, click.Parameter, str | None], list[Any] | None]:
    """A callback reading ``a,b,c`` as a list of ``item`` (a list setting's option)."""
    what = {int: "whole numbers", float: "numbers"}.get(item, "values")

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> list[Any] | None:
        if value is None:
            return None
        try:
            return [item(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"expected {what} separated by commas, got {value!r}") from None

    return parse


def setting_option(spec: Spec) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The click declarations and attributes of one setting's option, from its spec: its
    flag(s), type (a choice of its allowed values, a path, a list, KEY=VALUE pairs for a
    dict), help text and metavar. Unset options default to None, so presets and --config
    values stay in force."""
    s, base = spec.setting, spec.base
    decls = s.flags or ((f"{spec.flag}/--no-{spec.flag[2:]}",) if base is bool else (spec.flag,))
    attrs: dict[str, Any] = {"help": s.help, "default": None}
    if s.metavar:
        attrs["metavar"] = s.metavar
    origin = typing.get_origin(base)
    if origin is dict:
        attrs.update(multiple=True, callback=_dataset_option, default=())
    elif origin is list:
        attrs["callback"] = _list_of(typing.get_args(base)[0])
    elif s.registry is not None:
        attrs["type"] = _RegistryChoice(s.registry)
    elif s.choices is not None:
        attrs["type"] = click.Choice(list(s.choices))
    elif s.path:
        attrs["type"] = click.Path(path_type=str)
    elif base is not bool:
        attrs["type"] = base
    return decls, attrs


class _RegistryChoice(click.Choice):
    """A choice among a registry's names as the registry is when the option is read, so
    that a method or data set registered after this module was imported is accepted."""

    def __init__(self, registry: typing.Mapping[str, Any]) -> None:
        super().__init__(list(registry))
        self.registry = registry

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        self.choices = tuple(self.registry)
        return super().convert(value, param, ctx)


def _settings(*, without: tuple[str, ...] = ()) -> Any:
    """Add every training setting's option to a command, except the settings named in
    ``without`` (``train`` takes them all, ``sweep`` all but its grid's)."""

    def apply(f: Any) -> Any:
        for spec in reversed(SPECS.values()):
            if spec.name not in without:
                decls, attrs = setting_option(spec)
                f = click.option(*decls, **attrs)(f)
        return f

    return apply


def _float_list(ctx: click.Context, param: click.Parameter, value: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, got {value!r}") from None


def _name_list(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@main.command(context_settings={"show_default": False})
@_settings()
@click.option("--resume", type=click.Path(path_type=str), metavar="RUNDIR|auto",
              help="Continue the run in RUNDIR from its last checkpoint; 'auto': continue the run in --out if it "
                   "holds one, else start it there (a requeued cluster job runs the same command again).")
@click.option("--overwrite", is_flag=True, help="Replace the run in --out if there is one.")
@click.option("--restart", is_flag=True,
              help="With --resume: train the run again from its first epoch with its stored settings, replacing its "
                   "log and checkpoint (a run whose checkpoint is missing or damaged cannot continue otherwise).")
@click.option("--config", "config_file", type=click.Path(path_type=str), help="TOML file with any of these settings.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or epoch lines.")
@click.option("--maps", "maps", default="", metavar="umap,tsne,pca", callback=_name_list,
              help="After training, compute these maps of the last epoch as the dashboard draws them (its "
                   f"default {MAP_POINTS:,} points), so its map page opens on them at once.")
def train(resume: str | None, overwrite: bool, restart: bool, config_file: str | None, quiet: bool,
          maps: list[str], **options: Any) -> None:
    """Train a method and log every sample's labels, relabels and distances to class centers.

    With no options: SCN-C on the synthetic data set, into runs/.
    """
    from relabscope.analysis.summary import run_summary
    from relabscope.training.runner import train as run_training

    unknown = [m for m in maps if m not in PROJECTIONS]
    if unknown:
        raise RelabscopeError(f"--maps: unknown map {unknown[0]!r}; choose from {', '.join(PROJECTIONS)}")

    given = {k: v for k, v in options.items() if v is not None}
    if restart and not resume:
        raise RelabscopeError("--restart goes with --resume RUNDIR (a new run needs no restart; --overwrite replaces "
                              "the run in --out)")
    if resume == AUTO:
        resume, given, config_file = _auto_resume(given, config_file)
    if resume:
        if config_file:
            raise RelabscopeError("--config cannot be combined with --resume (the run keeps its config)")
        result = run_training(given, resume=resume, restart=restart, progress=not quiet)
    else:
        result = run_training(resolve(given, config_file), overwrite=overwrite, progress=not quiet)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the job
        click.echo(run_summary(Path(result.run_dir), seconds=result.seconds))
        if maps and result.status == "finished":
            _prepare_maps(Path(result.run_dir), maps)


#: ``--resume auto``
AUTO = "auto"


def _auto_resume(given: dict[str, Any], config_file: str | None) -> tuple[str | None, dict[str, Any], str | None]:
    """``--resume auto``: the run directory to resume (--out, when it holds a run: its
    config.toml or its log)
    with the command's settings as the resume's (unchanged ones are accepted, changed ones
    must be resumable), or None to start the run there. Every rank of a torchrun job
    decides before any of them joins, so before rank 0 can have written anything."""
    settings = {**(read_toml(config_file) if config_file else {}), **given}
    out = settings.get("out")
    if not out:
        raise RelabscopeError("--resume auto needs --out: the run directory to continue, or to start the run in")
    if holds_run(out):
        return str(out), settings, None
    return None, given, config_file


def _prepare_maps(run_dir: Path, maps: list[str]) -> None:
    """Compute and cache the maps the dashboard asks for first (``Run.project`` with its
    default arguments and points), saying how long each took."""
    with Run(run_dir) as run:
        for method in maps:
            start = time.perf_counter()
            run.project(method, epoch=-1, max_points=MAP_POINTS)  # type: ignore[arg-type]  # checked above
            click.echo(f"map: {method} of epoch {run.embedding_epoch(-1)} ready "
                       f"({time.perf_counter() - start:.0f} s, cached in {run_dir})", err=True)


@main.command(context_settings={"show_default": False})
@click.option("--methods", default=",".join(default_sweep()), show_default=True,
              callback=_name_list, help="Methods to train, comma-separated.")
@click.option("--noise", default="0,0.1,0.2,0.3", show_default=True, callback=_float_list,
              help="Injected noise levels, comma-separated.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Seeds per cell (0..N-1).")
@click.option("--guards", default="none", show_default=True, callback=_name_list,
              metavar="none,floor=F,hysteresis=K,agree",
              help="Relabel-guard settings to compare, comma-separated; each none (every guard off) or guards "
                   "joined by +, e.g. floor=0.5+agree (--relabel-floor, --relabel-hysteresis, --relabel-agree). "
                   "Methods that do not relabel train once, unguarded.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Sweep folder (running the same command again continues it).")
@click.option("--epoch", "select", type=click.Choice(["last", "best"]), default="last", show_default=True,
              help="Which epoch's test accuracy the table reports (the paper: last).")
@_settings(without=GRID_KEYS)
@click.option("--config", "config_file", type=click.Path(path_type=str), help="TOML file with shared settings.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.option("--gpus", callback=_name_list, default="", metavar="0,1,...",
              help="One single-GPU sweep process per listed GPU (CUDA_VISIBLE_DEVICES), sharing the grid: many "
                   "small runs at once. Under torchrun every run is instead spread over all ranks.")
def sweep(methods: list[str], noise: list[float], seeds: int, guards: list[str], out: str, select: Select,
          config_file: str | None, quiet: bool, gpus: list[str], **options: Any) -> None:
    """Train every method at every noise level and seed (relabelling methods under every
    --guards setting), then print the noise table.

    Writes OUT/table.csv and OUT/table.md (the seed paper's Table 3 layout: last-epoch test
    accuracy, mean ± std over seeds, plus flip-flops, vetoed relabels, noise recovery,
    classes emptied, relabel consistency and compactness).
    Finished runs are skipped, so a killed sweep continues where it stopped; the same
    command started in several terminals (or on several GPUs, --gpus) shares the grid.
    """
    from relabscope.sweep import run_sweep, write_tables

    if gpus:
        result_busy, failed = [], _sweep_per_gpu(gpus)
    else:
        settings = {**(read_toml(config_file) if config_file else {}),
                    **{k: v for k, v in options.items() if v is not None}}
        result = run_sweep(out, methods=methods, noise=noise, seeds=seeds, settings=settings, guards=guards,
                           progress=not quiet, log=lambda line: click.echo(line, err=True))
        result_busy, failed = result.busy, [message for _, message in result.failed]
    if os.environ.get("RANK", "0") != "0" or os.environ.get(SWEEP_WORKER):  # rank 0 / the parent speaks
        return
    _, markdown = write_tables(out, epoch=select)
    click.echo(markdown)
    if result_busy:
        click.echo(f"sweep: {len(result_busy)} runs are being trained by another process; the table includes "
                   "them once they finish (run this command again then)", err=True)
    if failed:
        raise RelabscopeError(f"{len(failed)} of the sweep's runs failed (first: {failed[0]})")


#: set in the sweep processes ``--gpus`` starts: the parent prints the table once
SWEEP_WORKER = "RELABSCOPE_SWEEP_WORKER"


def _sweep_per_gpu(gpus: list[str]) -> list[str]:
    """The same sweep command once per GPU (``CUDA_VISIBLE_DEVICES`` set to it, ``--gpus``
    left out), all at once: the processes share the grid through its run-directory locks.
    Returns one message per process that failed."""
    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--gpus":
            skip = True
        elif not arg.startswith("--gpus="):
            argv.append(arg)
    children = [(gpu, subprocess.Popen([sys.executable, "-m", "relabscope", *argv],
                                       env={**os.environ, "CUDA_VISIBLE_DEVICES": gpu, SWEEP_WORKER: "1"}))
                for gpu in gpus]
    codes = [(gpu, child.wait()) for gpu, child in children]
    return [f"the sweep process on GPU {gpu} exited with {code}" for gpu, code in codes if code != 0]


def _model_options(f: Any) -> Any:
    """``--model``, ``--weights``, ``--layer``, ``--transform``: the model Grad-CAM explains
    for runs of a model relabscope did not build (a callback's or RunCapture's)."""
    f = click.option("--transform", metavar="MODULE:FN",
                     help="With --model: turns float images 0..255 into the model's input (default: the "
                          "normalisation the run recorded, else ImageNet's).")(f)
    f = click.option("--layer", metavar="NAME", help="With --model: the layer Grad-CAM explains (backbone.layer4).")(f)
    f = click.option("--weights", type=click.Path(dir_okay=False, path_type=str), metavar="FILE",
                     help="With --model: a state-dict file (a Lightning .ckpt too) loaded into the built model.")(f)
    f = click.option("--model", "factory", metavar="MODULE:FACTORY",
                     help="For runs of your own model (logged by a callback or RunCapture): the function (or class) "
                          "that builds it, imported from the current folder or the installed packages; without it "
                          "Grad-CAM uses the factory the run recorded, or says it is not available.")(f)
    return f


def _model_spec(factory: str | None, weights: str | None, layer: str | None, transform: str | None) -> ModelSpec | None:
    """The ModelSpec of ``--model`` and its options (None without ``--model``); the factory
    and transform are imported here, so a wrong path stops the command in one line."""
    if factory is None:
        if weights or layer or transform:
            raise RelabscopeError("--weights, --layer and --transform go with --model MODULE:FACTORY")
        return None
    spec = ModelSpec(factory, weights, layer, transform)
    spec.gradcam_options(Path.cwd())
    return spec


@main.command(context_settings={"show_default": False})
@click.argument("runs", nargs=-1, required=True, metavar="RUN [RUN2] | SWEEP", type=click.Path(path_type=str))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder for index.html, figures/ and tables/ (created if needed).")
@click.option("--png/--no-png", default=True, help="Also export every figure as PNG (needs Chrome or Chromium).")
@click.option("--images", "images", multiple=True, metavar="SOURCE",
              help="Where the runs' images are, for logs that record none: a folder (keys are relative paths), "
                   "a .npy/.npz array or a .txt list of paths; once for every run or once per RUN, in order.")
@_model_options
def report(runs: tuple[str, ...], out: str, png: bool, images: tuple[str, ...], **model: str | None) -> None:
    """Write every view of a run (or of two runs, plus comparisons) as HTML, PNG and tables.

    Given a sweep folder, writes the sweep's noise table and its figures instead.
    Prints the path of the report's index.html.
    """
    from relabscope.report import write_report, write_sweep_report
    from relabscope.sweep import is_sweep

    if len(runs) == 1 and is_sweep(runs[0]):
        click.echo(str(write_sweep_report(runs[0], out, png=png, log=lambda line: click.echo(line, err=True))))
        return
    if len(runs) > 2:
        raise RelabscopeError(f"report takes one or two run directories, not {len(runs)}")
    if len(images) not in (0, 1, len(runs)):
        raise RelabscopeError(f"--images: give one source for every run or one per run, not {len(images)} "
                              f"for {len(runs)}")
    sources = list(images) * len(runs) if len(images) == 1 else list(images)
    opened = [Run(path, images=sources[i] if sources else None) for i, path in enumerate(runs)]
    index = write_report(opened, out, png=png, model=_model_spec(**model), log=lambda line: click.echo(line, err=True))
    click.echo(str(index))


@main.command(context_settings={"show_default": False})
@click.argument("runs", nargs=-1, required=True, metavar="RUN...", type=click.Path(path_type=str))
def check(runs: tuple[str, ...]) -> None:
    """Read every committed epoch of each run's log against its checksums and list what is
    damaged and which epochs are intact. Exits 1 when anything is damaged."""

    damaged = 0
    for run in runs:
        found = check_log(run)
        click.echo(found.report())
        damaged += not found.ok
    if damaged:
        raise RelabscopeError(f"{damaged} of {len(runs)} run logs damaged")


@main.command(context_settings={"show_default": False})
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=str))
@click.option("--top", type=click.IntRange(min=1), default=200, show_default=True,
              help="How many of the most suspect training samples.")
@click.option("--format", "fmt", type=click.Choice(["csv", "labelstudio"]), default="csv", show_default=True,
              help="csv, or Label Studio import tasks (images embedded, the suggestion pre-annotated) with the "
                   "labeling interface beside them (.xml).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str),
              help="File to write (default: print the table).")
@click.option("--images", help="Where the run's images are, for a log that records none (Label Studio tasks).")
def suspects(run_dir: str, top: int, fmt: str, out: str | None, images: str | None) -> None:
    """The training samples whose given labels are most likely wrong, most suspect first
    (no clean labels needed: Run.suspects), as a table, a CSV or Label Studio tasks."""
    if fmt == "labelstudio" and out is None:
        raise RelabscopeError("--format labelstudio writes two files (the tasks and the labeling interface): give "
                              "--out tasks.json")
    with Run(run_dir, images=images) as run:
        if out is None:
            shown = suspect_rows(run, top)[["rank", "sample_id", "key", "score", "flag", "given", "suggested"]]
            click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
            return
        for path in export_suspects(run, out, top=top, format=fmt):  # type: ignore[arg-type]  # click checked it
            click.echo(str(path))


@main.command(context_settings={"show_default": False})
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=str))
@click.option("--import", "import_file", type=click.Path(dir_okay=False, path_type=str),
              help="A Label Studio export (JSON, JSON-MIN or CSV) of the tasks `relabscope suspects --format "
                   "labelstudio` wrote: each task's annotation becomes a decision (a ground-truth one wins).")
@click.option("--resolve", "resolve_rule", type=click.Choice(list(RESOLVE)), default="refuse", show_default=True,
              help="Annotators who disagree on a task: refuse the import naming them, take the latest annotation, "
                   "or the majority's choice (a tie: the latest of the tied).")
@click.option("--reviewer", help="Name the imported decisions' reviewer (default: each annotation's annotator).")
def corrections(run_dir: str, import_file: str | None, resolve_rule: str, reviewer: str | None) -> None:
    """The reviewers' decisions about RUN's samples (RUN/corrections.csv), after importing a
    Label Studio export if one is given. `relabscope train --corrections RUN/corrections.csv`
    trains on them."""
    with Run(run_dir) as run:
        if import_file:
            done = import_labelstudio(run, import_file, reviewer=reviewer, resolve=resolve_rule)
            click.echo(f"{done.summary()}; into {run.run_dir / 'corrections.csv'}", err=True)
        table = run.corrections()
        click.echo(table.to_string(index=False) if len(table) else "no decisions yet")


def _serve_options(f: Any) -> Any:
    f = click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
                     help="A host name a loopback server also answers (it answers localhost, 127.0.0.1 and [::1]; "
                          "any other is refused, against DNS rebinding). Repeatable.")(f)
    f = click.option("--auth-file", type=click.Path(dir_okay=False, path_type=str), metavar="FILE",
                     help="Reviewers who may sign in: an htpasswd-style file of bcrypt or PBKDF2 hashes (htpasswd "
                          "-B, or relabscope passwd FILE USER); each decision is recorded under the signed-in name "
                          "(default: the RELABSCOPE_AUTH_FILE environment variable).")(f)
    f = click.option("--auth", metavar="USER:PASS",
                     help="Require HTTP basic auth (default: the RELABSCOPE_AUTH environment variable).")(f)
    f = click.option("--max-points", type=click.IntRange(min=0), default=MAP_POINTS, show_default=True,
                     help="Points on an embedding map (a stratified subsample); 0: every training sample.")(f)
    f = click.option("--port", type=int, default=8050, show_default=True)(f)
    f = click.option("--host", default="127.0.0.1", show_default=True,
                     help="Address to bind; 0.0.0.0 makes the dashboard reachable from other machines (decisions "
                          "then need --auth or --auth-file).")(f)
    return _model_options(f)


def _serve(roots: list[str], *, host: str, port: int, auth: str | None, auth_file: str | None,
           allow_hosts: tuple[str, ...], max_points: int, page: str = "", images: tuple[str, ...] = (),
           **model: str | None) -> None:
    from relabscope.dashboard.app import serve as run_server

    run_server(roots, host=host, port=port, auth=auth, auth_file=auth_file, allow_hosts=allow_hosts, page=page,
               max_points=max_points or None, log=lambda line: click.echo(line, err=True),
               images=_image_options(images), model=_model_spec(**model))


def _image_options(values: tuple[str, ...]) -> dict[str, Any]:
    """``--images [RUN=]SOURCE`` values as ``RunRegistry``'s images: each source opened
    here, so a missing folder stops the command before a server starts."""
    from relabscope.dashboard.registry import DEFAULT_IMAGES

    out: dict[str, Any] = {}
    for value in values:
        run_id, sep, spec = value.partition("=")
        key, spec = (run_id, spec) if sep else (DEFAULT_IMAGES, value)
        if key in out:
            raise RelabscopeError(f"--images {value}: {'run ' + repr(key) if key else 'the default'} was given twice")
        out[key] = image_source(spec)
    return out


@main.command(context_settings={"show_default": False})
@click.argument("users_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=str))
@click.argument("user")
@click.password_option(help="The user's password (asked twice when not given).")
def passwd(users_file: str, user: str, password: str) -> None:
    """Add USER to the reviewers' FILE for serve --auth-file (or change their password): a
    PBKDF2-SHA256 hash with a random salt, never the password itself."""
    from relabscope.dashboard.users import add_user

    replaced = add_user(users_file, user, password)
    click.echo(f"{users_file}: {'changed the password of' if replaced else 'added'} {user}", err=True)


@main.command(context_settings={"show_default": False})
@click.argument("roots", nargs=-1, metavar="[PATH ...]", type=click.Path(path_type=str))
@_serve_options
@click.option("--images", "images", multiple=True, metavar="[RUN=]SOURCE",
              help="Images of runs whose log records none: a folder (keys are relative paths), a .npy/.npz "
                   "array or a .txt list of paths; RUN=SOURCE for that run id only (repeatable).")
def serve(roots: tuple[str, ...], images: tuple[str, ...], **serving: Any) -> None:
    """Dashboard of every run under PATH (default: runs/), newest first, until Ctrl-C.

    Runs still training show new epochs as they commit.
    """
    _serve(list(roots) or ["runs"], images=images, **serving)


@main.command(context_settings={"show_default": False})
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder for the two runs (finished runs there are reused).")
@click.option("--noise", type=float, default=0.2, show_default=True, help="Injected label noise.")
@click.option("--epochs", type=int, help="Epochs per run (default: the synthetic preset).")
@click.option("--no-serve", is_flag=True, help="Only train the runs.")
@_serve_options
def demo(out: str, noise: float, epochs: int | None, no_serve: bool, **serving: Any) -> None:
    """Train SCN and SCN-C on synthetic data with injected noise, then serve them side by side."""
    from relabscope.demo import demo_runs

    dirs = demo_runs(out, noise=noise, epochs=epochs, log=lambda line: click.echo(line, err=True))
    if no_serve:
        for d in dirs:
            click.echo(str(d))
        return
    _serve([out], page=demo_page(out, dirs), **serving)


def demo_page(out: str, dirs: list) -> str:
    """The compare page of the demo's runs (SCN as A, SCN-C as B), with the ids the
    dashboard gives them: their paths relative to ``out``, the folder it serves."""
    root = Path(out).resolve()
    a, b = (Path(d).resolve().relative_to(root).as_posix() for d in dirs[:2])
    return "compare?" + urlencode({"run": a, "against": b})


if __name__ == "__main__":  # pragma: no cover
    main()
