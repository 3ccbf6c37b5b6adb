"""The ``farmsync`` command.

Subcommands are imported lazily so that ``farmsync config`` or a tick does not pay for the simulator, the web app
or rich progress bars. Exit codes, everywhere: 0 success; 1 usage or configuration error (one line per problem,
never a traceback); 2 partial failure (some items or printers failed, the rest succeeded).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import sys
from typing import TYPE_CHECKING, Any

import click

from farmsync import __version__
from farmsync.errors import ConfigError, FarmsyncError

if TYPE_CHECKING:
    import importlib.metadata

    from farmsync.settings import Settings

EXIT_OK = 0
EXIT_CONFIG = 1
EXIT_PARTIAL = 2

# name -> "module:attribute" of a click command, loaded on first use
LAZY_COMMANDS: dict[str, str] = {
    "serve": "farmsync.commands:serve_command",
    "tick": "farmsync.commands:tick_command",
    "sync": "farmsync.commands:sync_group",
    "backfill": "farmsync.commands:backfill_command",
    "filament": "farmsync.commands:filament_command",
    "status": "farmsync.commands:status_command",
    "validate": "farmsync.commands:validate_command",
    "notify": "farmsync.notify_cli:notify_command",
    "gcode": "farmsync.gcode.cli:gcode",
}

COMMAND_PLUGINS = "farmsync.commands"
"""Entry-point group through which another distribution adds commands: farmsync_sim adds ``sim`` and ``demo``.
The product names no such distribution; it only looks the group up."""

# name -> what to say (in 80 columns, after click's "Error: ") when a command that another distribution adds is
# asked for but not installed
PLUGIN_HINTS: dict[str, str] = {
    name: f"`farmsync {name}` needs the simulator (farmsync_sim), not installed here.\n"
    "In a clone of the repository, `make demo` installs it and runs the demo;\n"
    "or install it yourself: pip install -e shared/farmsync_sim"
    for name in ("sim", "demo")
}


class LazyGroup(click.Group):
    """A click group whose subcommands live in other modules and are imported only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._available()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        if name in LAZY_COMMANDS:
            found = _load_command(LAZY_COMMANDS[name])
        elif (plugin := _plugins().get(name)) is not None:
            found = plugin.load()
        elif name in PLUGIN_HINTS:
            raise click.ClickException(PLUGIN_HINTS[name])
        else:
            return None
        if not isinstance(found, click.Command):
            raise TypeError(f"farmsync {name}: {found!r} is not a click command")
        return found

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Click says "No such command"; say which one was probably meant (``statsu`` → ``status``)."""
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            name = args[0] if args else ""
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=2, cutoff=0.5)
            if close and not name.startswith("-"):
                hint = " Did you mean " + " or ".join(repr(c) for c in close) + "?"
                raise click.UsageError(exc.message + hint, exc.ctx) from None
            raise

    @staticmethod
    def _available() -> list[str]:
        found = list(_plugins())
        for name, target in LAZY_COMMANDS.items():
            if importlib.util.find_spec(target.split(":")[0]) is not None:
                found.append(name)
        return found


def _load_command(target: str) -> Any:
    module_name, attribute = target.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def _plugins() -> dict[str, importlib.metadata.EntryPoint]:
    """Commands other installed distributions declare in :data:`COMMAND_PLUGINS`; farmsync's own names win.

    importlib.metadata is imported here, not at the top: it costs a fifth of a second of start-up that a
    ``farmsync gcode`` or a tick, which never looks up a plugin, should not pay."""
    import importlib.metadata

    found = importlib.metadata.entry_points(group=COMMAND_PLUGINS)
    return {ep.name: ep for ep in found if ep.name not in LAZY_COMMANDS}


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.version_option(__version__, prog_name="farmsync")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False),
    envvar="FARMSYNC_ENV_FILE",
    default=None,
    help="Settings file to read (default: .env in the current directory, if present).",
)
@click.pass_context
def cli(ctx: click.Context, env_file: str | None) -> None:
    """Keep a 3D-print farm in step: Bambuddy prints to InvenTree stock, filament spools, and G-code on printers."""
    ctx.ensure_object(dict)
    ctx.obj["env_file"] = env_file


def load_settings_for(ctx: click.Context, **overrides: Any) -> Settings:
    """Settings for a subcommand, honouring ``--env-file``; ConfigError bubbles up to :func:`main`."""
    from farmsync.settings import load_settings

    env_file = (ctx.find_root().obj or {}).get("env_file")
    settings = load_settings(env_file, **overrides)
    warn_unknown_settings(ctx, env_file)
    return settings


def warn_unknown_settings(ctx: click.Context, env_file: str | None) -> None:
    """``FILAMENT_DRYRUN`` would otherwise be ignored without a word: say so once, with the likely name."""
    from farmsync.envcheck import check_environment

    root = ctx.find_root()
    if not isinstance(root.obj, dict) or root.obj.get("env_checked"):
        return
    root.obj["env_checked"] = True
    for line in check_environment(env_file):
        click.echo(f"warning: {line}", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the settings as one JSON object.")
@click.pass_context
def config(ctx: click.Context, as_json: bool) -> None:
    """Print the resolved settings with secrets masked (exit 1 when any setting is invalid)."""
    from farmsync.security import token_warnings

    settings = load_settings_for(ctx)
    values = settings.masked()
    for line in token_warnings(settings):
        click.echo(f"warning: {line}", err=True)
    if as_json:
        click.echo(json.dumps(values, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="farmsync settings", show_lines=False)
    table.add_column("variable", style="bold", overflow="fold")
    table.add_column("value", overflow="fold")
    for name, value in values.items():
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = ",".join(f"{k}:{v}" for k, v in value.items())
        table.add_row(name, "" if value is None else str(value))
    console = Console()
    console.print(table)
    for feature in ("prints", "filament", "gcode"):
        missing = settings.missing_for(feature)
        state = "ready" if not missing else "not configured (missing " + ", ".join(missing) + ")"
        console.print(f"{feature}: {state}")


def report_config_error(error: ConfigError) -> None:
    for problem in error.problems:
        click.echo(f"error: {problem}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: run the CLI, turning farmsync errors into one-line messages and exit codes."""
    from farmsync.startup import skip_final_collection, skip_httpx_cli

    skip_httpx_cli()  # nothing has imported httpx yet; see farmsync.startup for why
    skip_final_collection()
    try:
        code = cli.main(args=argv, prog_name="farmsync", standalone_mode=False)
    except ConfigError as exc:
        report_config_error(exc)
        sys.exit(EXIT_CONFIG)
    except FarmsyncError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_CONFIG if exc.exit_code == 2 else exc.exit_code)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


if __name__ == "__main__":
    main()
