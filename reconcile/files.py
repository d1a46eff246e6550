"""Writing a file atomically: a temporary file beside it, flushed, then renamed over it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO


def write_atomically(path: Path, write: Callable[[TextIO], None], *, mode: int = 0o644) -> None:
    """Call ``write`` on a temporary file beside ``path``, then rename it over ``path``.

    A reader sees the old file or the whole new one, never a part; a failure leaves no
    temporary file behind.

    Args:
        path: the file to replace; its directory is created when missing.
        write: writes the content to the text stream it is given.
        mode: the permissions of the new file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
