"""What every command shares: exit codes and errors, how STORE is taken and opened, the line a
missing optional dependency gives, text tables, and progress on a terminal.

Errors are handled in one place, `Commands.invoke`: a command lets an `AuditError` (or an
`OSError`, a file it cannot read or write) propagate, and the handler prints one line on stderr
and exits with the code `exit_code` maps it to. A command catches an error itself only to add
what the message cannot know (the option it came from, the systems a store holds)."""

from __future__ import annotations

import functools
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import click

from otel_ai_audit.errors import AuditError
from otel_ai_audit.store.sqlite import AuditStore

EXIT_OK = 0
EXIT_FAILED = 1
"""Verification failed: tampered, incomplete or untrusted."""
EXIT_USAGE = 2
"""Usage or I/O error: the command could not do its job (unreadable file, not a store)."""

Command = TypeVar("Command", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"otel-ai-audit: error: {message}", err=True)
    sys.exit(code)


def exit_code(error: AuditError | OSError) -> int:
    """The exit code for an error that ends a command: always `EXIT_USAGE`, the command could
    not do its job. `EXIT_FAILED` is kept for a verification that ran and failed, which a
    command reports from its result (a tampered record is a finding, not an error)."""
    return EXIT_USAGE


def command_line(*words: str) -> str:
    """A command a user can paste into a shell."""
    return shlex.join(["otel-ai-audit", *words])


# --- STORE ----------------------------------------------------------------------------------

def store_argument(default: Callable[[], str | None] | None = None) -> Callable[[Command],
                                                                                 Command]:
    """STORE as the first argument, as every command takes it; `--store PATH` still works for
    this release, with a deprecation line on stderr. Without either, `default()` (e.g. the
    `$OTEL_AI_AUDIT_STORE` path), else None."""

    def decorate(command: Command) -> Command:
        @functools.wraps(command)
        def run(*args: Any, store: str | None, deprecated_store: str | None,
                **kwargs: Any) -> Any:
            if deprecated_store is not None:
                if store is not None:
                    fail("give the store once: as STORE, not also with --store")
                name = click.get_current_context().info_name
                click.echo(f"otel-ai-audit: warning: --store is deprecated and goes in the next "
                           f"release; give the store first: otel-ai-audit {name} STORE ...",
                           err=True)
                store = deprecated_store
            if store is None and default is not None:
                store = default()
            return command(*args, store=store, **kwargs)

        run = click.option("--store", "deprecated_store", hidden=True,
                           type=click.Path(dir_okay=False))(run)
        return click.argument("store", required=False, type=click.Path(dir_okay=False))(run)

    return decorate


@contextmanager
def read_store(path: str) -> Iterator[AuditStore]:
    """The store opened read-only (nothing written beside it); a `StoreError` if it cannot be,
    which `Commands` reports in one line."""
    with AuditStore(path, create=False, readonly=True) as store:
        yield store


# --- optional dependencies ------------------------------------------------------------------

EXTRAS = {"pandas": "ml", "scipy": "ml", "sklearn": "ml", "matplotlib": "ml", "jinja2": "ml",
          "fpdf": "ml", "elasticsearch": "elasticsearch", "elastic_transport": "elasticsearch",
          "fastapi": "fastapi", "uvicorn": "demo", "httpx": "demo", "boto3": "anchor",
          "rfc3161_client": "anchor"}
"""The top-level modules the optional extras of pyproject.toml install, by extra."""


def missing_extra(command: str, error: ModuleNotFoundError) -> str | None:
    """The one line for a module an extra installs, or None for any other missing module (a
    bug, which keeps its traceback)."""
    module = (error.name or "").partition(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    return (f"{command} needs the `{extra}` extra: pip install 'otel-ai-audit[{extra}]' "
            f"({module} is not installed)")


class Commands(click.Group):
    """The command group, and the one error handler of every command: an `AuditError` or an
    `OSError` ends the command with its one line (`fail`) and `exit_code`; a missing optional
    dependency, whenever the command imports it, with the line saying which extra to install.
    Anything else is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AuditError as error:
            fail(error.diagnostics(), exit_code(error))
        except BrokenPipeError:
            raise  # click's own handling: the reader of stdout went away, nothing to report
        except OSError as error:
            fail(str(error), exit_code(error))
        except ModuleNotFoundError as error:
            message = missing_extra(ctx.invoked_subcommand or "otel-ai-audit", error)
            if message is None:
                raise
            fail(message)


# --- output ---------------------------------------------------------------------------------

def table(rows: list[tuple[Any, ...]]) -> str:
    """Left-aligned text columns, the first row a header."""
    text = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[column]) for row in text) for column in range(len(text[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                            strict=True)).rstrip()
                     for row in text)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A progress bar (a spinner without `total`) on stderr while the block runs, if stderr is
    a terminal; nothing when it is piped or redirected, so logs and CI output stay clean.
    Yields `advance(n)`. The bar is removed when the block ends: results print after it."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(stderr=True)
    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
