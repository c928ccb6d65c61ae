"""Argument checks shared by the library and the zoo's configs (design rule 5).

Each raises a `ValueError` that names the argument and the value received,
where the value enters (a constructor, a config's `validate`, a pipeline).
"""

import dataclasses

import numpy as np


def one_of(name, value, allowed):
    """Raises unless `value` is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {', '.join(map(str, allowed))}. "
                         f"Received: {name}={value!r}")
    return value


def at_least(name, value, minimum, allow_none=False):
    """Returns `value` as an int; raises unless it is an integer (not a bool) >= `minimum`
    (or None, returned as is, if `allow_none`)."""
    if allow_none and value is None:
        return None
    if (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
            or value < minimum):
        raise ValueError(f"`{name}` must be an integer >= {minimum}"
                         f"{' or None' if allow_none else ''}. Received: {name}={value!r}")
    return int(value)


def divides(name, value, sizes, what="the latent size"):
    """Returns `value`; raises unless the integer `value` divides every size in `sizes`
    (e.g. free-bits groups and the latent layers they split)."""
    if any(int(size) % value for size in sizes):
        raise ValueError(f"`{name}` must divide {what} {list(sizes)}. Received: {name}={value!r}")
    return value


def unused_at_default(config, names, reason):
    """Raises unless each field in `names` of the dataclass `config` has its default.

    For options an entry inherits but whose objective has no use for (β of
    the IWAE bound, ...): a value set for them would otherwise be ignored.
    """
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    changed = {name: getattr(config, name) for name in names
               if getattr(config, name) != defaults[name]}
    if changed:
        received = ", ".join(f"{name}={value!r}" for name, value in changed.items())
        raise ValueError(f"{', '.join(f'`{n}`' for n in changed)} not used by {reason}; leave "
                         f"{'it' if len(changed) == 1 else 'them'} at the default. "
                         f"Received: {received}")


def non_negative(name, value):
    """Returns `value` as a float; raises unless it is a number (not a bool) >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not value >= 0:
        raise ValueError(f"`{name}` must be >= 0. Received: {name}={value!r}")
    return float(value)


def positive(name, value):
    """Returns `value` as a float; raises unless it is a number (not a bool) > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not value > 0:
        raise ValueError(f"`{name}` must be > 0. Received: {name}={value!r}")
    return float(value)
