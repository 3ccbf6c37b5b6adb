"""``farmsync gcode``: mirror a master folder onto the printers of a printers.yml file, from the command line.

The flags of the printers.yml format's original command line keep their meaning (``-c -s -d -r -p -x -g
--ignore-state``; dry run by default; ``-p A B`` as well as ``-p A -p B``; ``-x`` ignored when ``-p`` is given).
Also: ``--json``, ``--concurrency``, ``--suffix``, ``--verbose``, ``--allow-empty-source``, ``--data-dir``, and
``--pull`` (copy printer-only files into the source instead of deleting them; see :mod:`farmsync.gcode.pull`),
which exits 2 on any conflict.

The run is :mod:`farmsync.gcode.service`'s, the same as the tick's: the upload manifest and the write guard live
in the store (DATA_DIR/sync.sqlite3 by default, or what STORE_BACKEND names), so a command-line run and a tick on
the same farm never upload a file twice.

Exit codes: 0 nothing failed (busy printers are deferred, listed, and do not fail the run); 2 a printer or file
failed, a source file was left out, or every selected printer was deferred; 1 usage or configuration error,
one line per problem and no traceback. See :mod:`farmsync.gcode.report` for why.

The command is not registered here; the ``farmsync`` group loads it by name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from farmsync.errors import ConfigError, FarmsyncError
from farmsync.gcode.backends.base import PrinterBackend
from farmsync.gcode.config import PrinterConfig, Selection, load_printers, select_printers
from farmsync.gcode.engine import BackendFactory, MirrorListener, MirrorOptions
from farmsync.gcode.plan import normalize_suffixes
from farmsync.gcode.report import EXIT_USAGE, MirrorReport
from farmsync.gcode.service import GcodeHome, mirror_printers, pull_printers
from farmsync.store.base import Store


@dataclass
class GcodeDeps:
    """Seams for tests: pass as ``obj`` (or put in the context) to override the back ends or the store."""

    backend_factory: BackendFactory | None = None
    store: Store | None = None


def default_backend_factory(printer: PrinterConfig) -> PrinterBackend:
    """The real back ends, imported on first use (they pull in httpx clients and are built separately)."""
    from farmsync.gcode.backends import backend_for

    return backend_for(printer)


# --- options taking several values after one flag (argparse's nargs='*') -----------------------------------------------------------------------


class GreedyOption(click.Option):
    """A repeatable option that also takes several values after one flag, like argparse ``nargs='*'``.

    ``-p A B -p C`` gives ``("A", "B", "C")``. Values run until the next token starting with ``-``. Click has no
    such option type, so :class:`GcodeCommand` rewrites ``-p A B`` into ``-p A -p B`` before parsing.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["multiple"] = True
        super().__init__(*args, **kwargs)


def expand_greedy(args: Sequence[str], flags: set[str]) -> list[str]:
    """Rewrite ``-p A B`` as ``-p A -p B`` for every greedy flag (``--printer=A B`` and ``-pA B`` too)."""
    out: list[str] = []
    current: str | None = None
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if token == "--":  # noqa: S105 - the end-of-options marker, not a secret
            out.extend(args[index - 1 :])
            break
        if current is not None and not token.startswith("-"):
            out += [current, token]
            continue
        current = None
        out.append(token)
        if token in flags:
            if index < len(args) and not args[index].startswith("-"):
                out.append(args[index])
                index += 1
                current = token
        elif token.startswith("--") and token.split("=", 1)[0] in flags and "=" in token:
            current = token.split("=", 1)[0]
        elif not token.startswith("--") and token[:2] in flags and len(token) > 2:
            current = token[:2]
    return out


class GcodeCommand(click.Command):
    """Expands greedy options, and makes usage errors exit 1 like every other farmsync usage error."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        flags = {opt for p in self.params if isinstance(p, GreedyOption) for opt in p.opts}
        try:
            return super().parse_args(ctx, expand_greedy(args, flags))
        except click.UsageError as exc:
            # click declares exit_code a ClassVar, but an instance value is what it reads; a new exception of a
            # subclass would lose the message a MissingParameter builds when shown
            exc.exit_code = EXIT_USAGE  # type: ignore[misc]
            raise


# --- the command -----------------------------------------------------------------------------------------


@click.command("gcode", cls=GcodeCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="printers.yml",
    show_default=True,
    help="YAML (.yml/.yaml) or JSON (.json/.jsn/.jso) file describing the printers.",
)
@click.option(
    "-s",
    "--source",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Local master folder to mirror.",
)
@click.option(
    "-d",
    "--destination",
    default=None,
    help="Folder in the printers' storage to mirror into; '/usb/' is the root, '/usb/farm' is 'farm'. "
    "Default: each printer's 'destination' key, else the storage root.",
)
@click.option(
    "-r",
    "--relative-to",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Place files by their path relative to this folder (the source or a parent of it). Default: the source.",
)
@click.option(
    "-p", "--printer", "printers", cls=GreedyOption, metavar="NAME...", help="Only these printers (-p A B)."
)
@click.option(
    "-x",
    "--exclude",
    "excluded",
    cls=GreedyOption,
    metavar="NAME...",
    help="All printers but these; ignored with -p.",
)
@click.option(
    "-g", "--go", is_flag=True, help="Make the changes. Without it, show what would be done (dry run)."
)
@click.option(
    "--ignore-state", is_flag=True, help="Also touch printers that are not idle (risky while printing)."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the per-printer, per-file report as JSON on stdout."
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=0),
    default=0,
    help="Printers synced at once (0: all of them).",
)
@click.option(
    "--suffix",
    "suffixes",
    multiple=True,
    metavar="SUFFIX",
    help="File suffix to mirror, case-insensitive; repeat for several (replaces the default .gcode .bgcode .gco .g).",
)
@click.option("-v", "--verbose", is_flag=True, help="List unchanged and skipped files too.")
@click.option(
    "--allow-empty-source",
    is_flag=True,
    help="Allow an empty source folder (deletes everything under the destination).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DATA_DIR",
    default="data",
    show_default=True,
    help="Where farmsync keeps its state (env DATA_DIR): the store with the upload manifest "
    "(sync.sqlite3, unless STORE_BACKEND names another) and the cache of file hashes.",
)
@click.option(
    "--pull",
    is_flag=True,
    help="Instead of mirroring, copy files that exist only on printers into the source folder. Never "
    "overwrites; printers holding different copies (or a copy differing from the source) are reported as "
    "conflicts and exit 2. A dry run unless -g/--go.",
)
@click.pass_context
def gcode(
    ctx: click.Context,
    config_path: Path,
    source: Path,
    destination: str | None,
    relative_to: Path | None,
    printers: tuple[str, ...],
    excluded: tuple[str, ...],
    go: bool,
    ignore_state: bool,
    as_json: bool,
    concurrency: int,
    suffixes: tuple[str, ...],
    verbose: bool,
    allow_empty_source: bool,
    data_dir: Path,
    pull: bool,
) -> None:
    """Mirror a master folder of G-code onto every idle printer at once (a dry run unless -g/--go)."""
    deps = _deps(ctx)
    try:
        farm = load_printers(config_path)
        selection = select_printers(farm, printers, excluded)
        chosen_suffixes = normalize_suffixes(suffixes) if suffixes else None
        if suffixes and not chosen_suffixes:
            raise FarmsyncError("--suffix: expected a file suffix such as .gcode")
        options = MirrorOptions(
            destination=destination,
            relative_to=relative_to,
            dry_run=not go,
            ignore_state=ignore_state,
            concurrency=concurrency,
            allow_empty_source=allow_empty_source,
            **({"suffixes": chosen_suffixes} if chosen_suffixes else {}),
        )
    except ConfigError as exc:
        _fail(ctx, *exc.problems)
    except FarmsyncError as exc:
        _fail(ctx, str(exc))
    if as_json:  # the tables' summary repeats notes; JSON readers still get them on stderr
        for note in selection.notes:
            click.echo(f"note: {note}", err=True)

    try:
        home = _home(ctx, deps, data_dir)
    except ConfigError as exc:
        _fail(ctx, *exc.problems)
    try:
        if pull:
            _pull(ctx, home, source, options, selection, as_json, verbose)
        try:
            report = _run(home, source, options, selection, live=go)
        except FarmsyncError as exc:
            _fail(ctx, str(exc))
    finally:
        if deps.store is None:
            home.store.close()

    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        from farmsync.gcode.report import render_report
        from farmsync.human import report_console

        console = report_console()
        render_report(console, report, verbose=verbose)
    ctx.exit(report.exit_code)


def _home(ctx: click.Context, deps: GcodeDeps, data_dir: Path) -> GcodeHome:
    """The store the settings name (with DATA_DIR from ``--data-dir``), unless a test gives one."""
    store = deps.store
    if store is None:
        from farmsync.settings import load_settings
        from farmsync.store import open_store

        root = ctx.find_root().obj
        env_file = root.get("env_file") if isinstance(root, dict) else None
        store = open_store(load_settings(env_file, data_dir=data_dir))
    return GcodeHome(store, data_dir, deps.backend_factory or default_backend_factory)


def _run(
    home: GcodeHome, source: Path, options: MirrorOptions, selection: Selection, *, live: bool
) -> MirrorReport:
    """Run the mirror on a fresh event loop, with the progress display only for real runs (``live``): a dry
    run draws no bars, so it does not import them (nor rich)."""

    def mirror(listener: MirrorListener) -> MirrorReport:
        return asyncio.run(
            mirror_printers(
                home,
                selection.selected,
                source,
                options,
                listener=listener,
                excluded=selection.excluded,
                notes=selection.notes,
            )
        )

    if not live:
        return mirror(MirrorListener())
    from farmsync.gcode.progress import ProgressDisplay
    from farmsync.logs import through_console

    display = ProgressDisplay()
    with display, through_console(display.console):
        return mirror(display)


def _pull(
    ctx: click.Context,
    home: GcodeHome,
    source: Path,
    options: MirrorOptions,
    selection: Selection,
    as_json: bool,
    verbose: bool,
) -> NoReturn:
    """``--pull``: the same selection, options and exit-code rules, pulling instead of mirroring."""
    try:
        report = asyncio.run(
            pull_printers(
                home, selection.selected, source, options, excluded=selection.excluded, notes=selection.notes
            )
        )
    except FarmsyncError as exc:
        _fail(ctx, str(exc))
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        from farmsync.gcode.pull_report import render_pull_report
        from farmsync.human import report_console

        console = report_console()
        render_pull_report(console, report, verbose=verbose)
    ctx.exit(report.exit_code)


def _deps(ctx: click.Context) -> GcodeDeps:
    """GcodeDeps given as the context object, or under ``"gcode"`` in the farmsync group's dict object."""
    found = ctx.find_object(GcodeDeps)
    if found is None:
        root = ctx.find_root().obj
        candidate = root.get("gcode") if isinstance(root, dict) else None
        found = candidate if isinstance(candidate, GcodeDeps) else None
    return found or GcodeDeps()


def _fail(ctx: click.Context, *lines: str) -> NoReturn:
    for line in lines:
        click.echo(f"error: {line}", err=True)
    ctx.exit(EXIT_USAGE)
