"""What the entry points (functions/main.py and the ``farmsync`` command) do to start, and end, faster.

Start:
``import httpx`` runs ``try: from ._main import main`` in httpx/__init__.py: httpx's own command-line client,
which imports click, rich and pygments whenever they are installed (about 50 ms of a cold start, half of
``import httpx``). farmsync never runs that client; rich is installed for farmsync's own tables and progress
bars, which load it only when they draw. Marking ``httpx._main`` as absent makes that import fail, and httpx
catches the ImportError and defines a ``main`` that explains the CLI is not installed; every other part of
httpx is untouched. Only the entry points call this: a library must not edit ``sys.modules`` of a process it
is merely imported into. tests/unit/test_cold_imports.py fails if httpx stops tolerating it or if the modules
come back.

End: a ``farmsync`` command that has done its work still spent 50–60 ms exiting, in the interpreter's last
garbage collection over every object of the ~550 modules it imported (measured from its last ``atexit``
handler to the process's end). :func:`skip_final_collection` freezes those objects at exit, after every
store, client and file of the run is closed, so that collection has almost nothing left to walk. Modules are
still torn down, atexit handlers still run and buffered output is still flushed; objects are freed by
reference counting as before; only unreachable cycles are left for the operating system to reclaim with the
rest of the process.
"""

from __future__ import annotations

import atexit
import gc
import sys


def skip_httpx_cli() -> None:
    """Keep ``import httpx`` from loading httpx's command-line client (click, rich, pygments)."""
    if "httpx._main" not in sys.modules:
        # None in sys.modules is how the import system marks a module as absent; typeshed types values as modules
        sys.modules["httpx._main"] = None  # type: ignore[assignment]


def skip_final_collection() -> None:
    """At interpreter exit, exempt what is left from the last cyclic garbage collection (see the module doc).
    atexit runs handlers last-registered first: this one runs after those the run registered (logging's
    flush, threads' joins) and before those registered earlier; none of them needs that collection."""
    atexit.register(gc.freeze)
