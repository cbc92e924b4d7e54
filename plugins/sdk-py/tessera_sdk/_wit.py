"""The component's bindings, imported once, when the plugin's module is.

componentize-py snapshots the interpreter after importing the plugin's module: only
modules imported by then exist in the component (it has no filesystem to import from
later), so the SDK imports the bindings here, at import time. Each is ``None`` where it
does not exist: natively (a plugin's own tests) and in a world without it (a query
handler has no projection store, a command handler no SQL at all).
"""

try:
    from componentize_py_types import Err
except ImportError:  # natively
    Err = None

try:
    from wit_world.imports import log, types
except ImportError:
    log = types = None

# A command handler's world has no SQL.
try:
    from wit_world.imports import sql_types
except ImportError:
    sql_types = None

try:
    from wit_world.imports import projection_store
except ImportError:
    projection_store = None

try:
    from wit_world.imports import read_store
except ImportError:
    read_store = None

try:
    from wit_world.exports.projector import BatchFailure
except ImportError:
    BatchFailure = None

try:
    from wit_world.exports.aggregate import NewEvent
except ImportError:
    NewEvent = None


def native() -> bool:
    """Whether the SDK runs outside a component (no bindings)."""
    return types is None
