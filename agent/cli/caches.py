"""chooctl's cache commands: cache ls and cache rm (the caches between runs)."""

from __future__ import annotations

import click

from agent.cli.group import ChooGroup, connect
from agent.cli.output import EXIT_ERROR, emit_json, table, when


@click.group(cls=ChooGroup)
def cache() -> None:
    """Caches kept between runs (a spec's caches), listed and cleared."""


@cache.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print the caches as JSON.")
@click.pass_context
def cache_ls(ctx: click.Context, as_json: bool) -> None:
    """List caches: name, group (job name, * shared, - no name), size, last use."""
    with connect(ctx) as client:
        rows = client.list_caches()
    if as_json:
        emit_json(rows)
        return
    table(
        [[r["name"], r["group"], str(r["size"]), when(r["last_used"]), r["volume"]] for r in rows],
        ["NAME", "GROUP", "BYTES", "LAST USED", "VOLUME"],
    )


@cache.command("rm")
@click.argument("name")
@click.option(
    "--group",
    metavar="GROUP",
    help='Only the cache of this group: a job name, "*" (shared) or "-" (no name).',
)
@click.pass_context
def cache_rm(ctx: click.Context, name: str, group: str | None) -> None:
    """Clear the caches called NAME (every group's, unless --group); the next run
    starts with an empty one. A cache a running job uses is kept (exit status 125)."""
    with connect(ctx) as client:
        result = client.remove_caches(name, group=group)
    for item in result["removed"]:
        click.echo(f"removed cache {item['name']} ({item['group']}, {item['size']} bytes)")
    for item in result["in_use"]:
        click.echo(f"chooctl: cache {item['name']} ({item['group']}) is in use; kept", err=True)
    if result["in_use"]:
        ctx.exit(EXIT_ERROR)
