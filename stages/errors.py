"""The one error type a stage reports to its user as a single line, and the wrapper that does it."""

import sys
from collections.abc import Callable


class UserError(Exception):
    """A mistake the user can fix (a parameter, a file): reported as one line, never a traceback."""


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's main(); a UserError becomes `<stage>: error: <message>` on stderr and exit 1."""
    try:
        main()
    except UserError as error:
        sys.exit(f"{name}: error: {error}")
