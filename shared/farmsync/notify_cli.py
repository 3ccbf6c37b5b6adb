"""``farmsync notify --test``: send one test message to NOTIFY_URL, to check the URL and style before relying on it."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from farmsync.cli import EXIT_PARTIAL, load_settings_for


@click.command("notify")
@click.option("--test", "test", is_flag=True, required=True, help="Send a test notification now.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document for scripts.")
@click.pass_context
def notify_command(ctx: click.Context, test: bool, as_json: bool) -> None:
    """Send a test notification to NOTIFY_URL in NOTIFY_STYLE (exit 2 when it did not arrive)."""
    from farmsync.logs import configure, register_secrets
    from farmsync.notify import send_test
    from farmsync.security import secret_parts

    settings = load_settings_for(ctx)
    configure(settings.log_format, "WARNING")
    register_secrets(secret_parts(settings.notify_url.get_secret_value()))
    result = asyncio.run(send_test(settings))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    elif result["sent"]:
        click.echo(f"sent a {result['style']} test notification to {result['target']}")
    else:
        click.echo(f"not sent: {result['error']}", err=True)
    if not result["sent"]:
        sys.exit(EXIT_PARTIAL)
