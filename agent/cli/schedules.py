"""chooctl's schedule commands: schedule add, ls, rm, run, suspend and resume."""

from __future__ import annotations

from typing import Any

import click

from agent.cli.group import ChooGroup, connect
from agent.cli.output import emit_json, table, when
from agent.cli.spec_options import RUN_SETTINGS, build_spec, template_options
from agent.protocol.methods import CLI_TRIGGER
from agent.protocol.schedules import DEFAULT_HISTORY, DEFAULT_POLICY, MAX_HISTORY, POLICIES


@click.group(cls=ChooGroup)
def schedule() -> None:
    """Named job templates run on a cron schedule."""


@schedule.command("add", context_settings=RUN_SETTINGS)
@click.argument("schedule_name", metavar="NAME")
@click.argument("cron", metavar="CRON")
@template_options
@click.option(
    "--concurrency",
    type=click.Choice(POLICIES),
    default=DEFAULT_POLICY,
    show_default=True,
    help="When a run is due while an earlier one has not ended.",
)
@click.option(
    "--catch-up/--no-catch-up",
    default=True,
    show_default=True,
    help="After downtime, run once for the fires missed.",
)
@click.option(
    "--history-limit",
    type=click.IntRange(0, MAX_HISTORY),
    default=DEFAULT_HISTORY,
    show_default=True,
    help="Finished runs to keep.",
)
@click.option("--timezone", metavar="ZONE", help="Time zone of CRON (default: the agent's).")
@click.option("--json", "as_json", is_flag=True, help="Print the schedule as JSON.")
@click.pass_context
def schedule_add(
    ctx: click.Context,
    schedule_name: str,
    cron: str,
    image: str,
    command: tuple[str, ...],
    concurrency: str,
    catch_up: bool,
    history_limit: int,
    timezone: str | None,
    as_json: bool,
    **opts: Any,
) -> None:
    """Run IMAGE [COMMAND...] whenever CRON (five fields, or @daily...) matches."""
    with connect(ctx) as client:
        row = client.schedule_add(
            schedule_name,
            cron,
            build_spec(image, command, opts),
            concurrency=concurrency,
            catch_up=catch_up,
            history_limit=history_limit,
            timezone=timezone,
        )
    if as_json:
        emit_json(row)
    else:
        click.echo(f"{row['name']}: next run {when(row['next_fire'])}")


@schedule.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print only schedule names.")
@click.option("--json", "as_json", is_flag=True, help="Print the schedules as JSON.")
@click.pass_context
def schedule_ls(ctx: click.Context, quiet: bool, as_json: bool) -> None:
    """List schedules: cron, policy, next run (or suspended), last run."""
    with connect(ctx) as client:
        rows = client.schedule_list()
    if as_json:
        emit_json(rows)
    elif quiet:
        for row in rows:
            click.echo(row["name"])
    else:
        table(
            [
                [
                    row["name"],
                    row["cron"],
                    row["concurrency"],
                    "suspended" if row.get("suspended_at") else when(row["next_fire"]),
                    row["last_job"] or "-",
                    str(len(row["active"])),
                ]
                for row in rows
            ],
            ["NAME", "CRON", "CONCURRENCY", "NEXT RUN", "LAST JOB", "ACTIVE"],
        )


@schedule.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def schedule_rm(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Remove schedules; the jobs they made are kept."""
    with connect(ctx) as client:
        for name in names:
            click.echo(client.schedule_remove(name)["name"])


@schedule.command("run")
@click.argument("schedule_name", metavar="NAME")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def schedule_run(ctx: click.Context, schedule_name: str, as_json: bool) -> None:
    """Run a schedule now, under its concurrency policy; print the new job's ID."""
    with connect(ctx) as client:
        result = client.schedule_trigger(schedule_name, trigger=CLI_TRIGGER)
    if as_json:
        emit_json(result)
    elif result["job"] is None:
        click.echo(f"chooctl: schedule {schedule_name}: skipped: {result['skipped']}", err=True)
    else:
        click.echo(result["job"]["id"])


@schedule.command("suspend")
@click.argument("schedule_name", metavar="NAME")
@click.pass_context
def schedule_suspend(ctx: click.Context, schedule_name: str) -> None:
    """Skip the schedule's fires until 'chooctl schedule resume NAME'; each one
    skipped is recorded (never caught up). 'schedule run' still works."""
    with connect(ctx) as client:
        change = client.schedule_suspend(schedule_name)
    click.echo(f"{schedule_name}: {'suspended' if change['changed'] else 'was already suspended'}")


@schedule.command("resume")
@click.argument("schedule_name", metavar="NAME")
@click.pass_context
def schedule_resume(ctx: click.Context, schedule_name: str) -> None:
    """Let a suspended schedule fire again, from its next match on."""
    with connect(ctx) as client:
        change = client.schedule_resume(schedule_name)
    if change["changed"]:
        click.echo(f"{schedule_name}: resumed; next run {when(change['schedule']['next_fire'])}")
    else:
        click.echo(f"{schedule_name}: was not suspended; nothing to resume")
