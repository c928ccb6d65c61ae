"""Argument checks shared by the library and the zoo's configs (design rule 5).

Each raises a `ValueError` that names the argument and the value received,
where the value enters (a constructor, a config's `validate`, a pipeline).
"""

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
