"""Argument checks shared by the calls: tensors as numpy arrays of an accepted dtype, shapes
checked against each other with the tensors' names in the message, options by keyword."""

import numpy as np

from . import _lib

FLOATS = (np.float32, np.float64)


def floats(name, a, ndim, dtype=np.float64):
    """`a` as a C-contiguous array of `dtype` with `ndim` dimensions: float32 and float64
    accepted (and copied only if the dtype or layout differs), anything else refused."""
    arr = np.asarray(a)
    if arr.dtype.type not in FLOATS:
        raise TypeError(
            f"tensor `{name}`: dtype {arr.dtype} is not accepted: give float32 or float64 "
            f"(e.g. {name}.astype(np.float32))"
        )
    if arr.ndim != ndim:
        raise ValueError(f"tensor `{name}`: expected {ndim} dimensions, got shape {tuple(arr.shape)}")
    return np.ascontiguousarray(arr, dtype=dtype)


def labels(a):
    """Class labels as uint32: any integer dtype, every value ≥ 0."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"tensor `labels`: dtype {arr.dtype} is not accepted: give integers (e.g. labels.astype(np.int64))")
    if arr.ndim != 2:
        raise ValueError(f"tensor `labels`: expected 2 dimensions [T, B], got shape {tuple(arr.shape)}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"tensor `labels`: label {arr.min()} is negative")
    if arr.size and arr.max() > np.iinfo(np.uint32).max:
        raise ValueError(f"tensor `labels`: label {arr.max()} is out of range")
    return np.ascontiguousarray(arr, dtype=np.uint32)


def expect(name, arr, want, why):
    """Refuses `arr` unless its shape is `want`, saying where each size comes from."""
    if tuple(arr.shape) != tuple(want):
        raise ValueError(f"tensor `{name}`: expected shape {list(want)} ({why}), got {list(arr.shape)}")


def truncation(truncate):
    """(K, None) for `truncate=K`, (None, P) for `truncate="random:P"`, (None, None) for None."""
    if truncate is None:
        return None, None
    if isinstance(truncate, str):
        kind, _, p = truncate.partition(":")
        if kind.strip() == "random" and p:
            try:
                return None, float(p)
            except ValueError:
                pass
        raise ValueError(f"`truncate` must be K steps (an int) or 'random:P' with P in [0, 1), not {truncate!r}")
    if isinstance(truncate, bool) or not isinstance(truncate, (int, np.integer)):
        raise ValueError(f"`truncate` must be K steps (an int) or 'random:P' with P in [0, 1), not {truncate!r}")
    if truncate < 1:
        raise ValueError(f"`truncate` K must be at least 1, got {truncate}")
    return int(truncate), None


def memory(value, name="memory"):
    """A number of bytes (`memory`, `max_memory`): an int, or a string such as "8G" or "512M"."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
        return int(value)
    if isinstance(value, str):
        n = _lib.parse_bytes(value.strip())
        if n:
            return n
    raise ValueError(f"`{name}` must be a number of bytes (e.g. 8000000000 or '8G'), not {value!r}")


def count(value, name):
    """A whole number ≥ 1 (`checkpoints`), or None."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
        return int(value)
    raise ValueError(f"`{name}` must be a whole number ≥ 1, not {value!r}")
