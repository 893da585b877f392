"""How every CLI ends on an error: one line naming the thing, and the documented exit code.

2: bad input or configuration (an option, an environment variable, a manifest, an hour not yet
complete); 1: the run itself failed (storage unreachable, inputs unreadable, a task failed). No
tracebacks for either: the line says what to fix or what to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import NoReturn

import typer
from azure.core.exceptions import AzureError
from pydantic import ValidationError

from workloads.common.console import console

BAD_INPUT = 2
RUN_FAILED = 1


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if isinstance(exc, AzureError) else text


def fail(message: str, code: int = RUN_FAILED) -> NoReturn:
    console(stderr=True).print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def _exit_on(caught: tuple[type[Exception], ...], code: int) -> Iterator[None]:
    try:
        yield
    except caught as exc:
        fail(one_line(exc), code)


def bad_input(*extra: type[Exception]) -> AbstractContextManager[None]:
    """Validation of options, environment and documents: exit 2 with the one-line reason."""
    return _exit_on((ValidationError, ValueError, *extra), BAD_INPUT)


def run_failures(*extra: type[Exception]) -> AbstractContextManager[None]:
    """The run itself: storage or service errors (and ``extra``) exit 1 with a one-line reason."""
    return _exit_on((AzureError, OSError, *extra), RUN_FAILED)
