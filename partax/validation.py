"""Argument checks: nets, inputs, labels, keys, counts, scopes, layers, numbers, vectors, flags.

One home for the checks that the codes kernel, the region tables, the sources, both
partition engines and the geometry modules share. Each check raises a ``ValueError`` (a bad value) or a
``TypeError`` (a value of the wrong kind) whose message starts with the argument's name
and says what was expected, and returns the value in the form the caller works with.

Labels are class indices: an integer (or bool) array, or floats that are all integers
(``1.0``); anything else (``0.5``, NaN, strings) is a ``TypeError``, a negative label, a
label ``>= num_classes`` or a wrong length a ``ValueError``.

Example:
    >>> import numpy as np
    >>> from partax.validation import check_labels, check_scopes
    >>> check_labels(np.array([1.0, 0.0]), 2).tolist(), check_scopes(["suffix", "layer"])
    ([1, 0], ('layer', 'suffix'))
    >>> check_labels(np.array([0, -1]), 2)
    Traceback (most recent call last):
    ...
    ValueError: labels: expected labels >= 0, got -1
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from partax.nets import Net
from partax.scopes import SCOPES, scope_range

__all__ = [
    "check_batch_size",
    "check_finite",
    "check_finite_inputs",
    "check_finite_vector",
    "check_flag",
    "check_indices",
    "check_inputs",
    "check_keys",
    "check_labels",
    "check_labels_below",
    "check_layer",
    "check_net",
    "check_num_classes",
    "check_positive",
    "check_positive_int",
    "check_scope",
    "check_scope_layer",
    "check_scopes",
    "check_tolerance",
    "check_vector",
    "nonfinite_error",
]


# --- nets ---------------------------------------------------------------------------------
def check_net(net, *, stacked: bool = True, caller: str = "this function") -> Net:
    """``net`` if it is a :class:`~partax.nets.Net` with a hidden layer, else an error.

    Args:
      net: the object to check.
      stacked: whether a stacked net (one leading axis on every array) is accepted; more
        than one stack axis never is.
      caller: the function's name, for the message when a stacked net is refused.

    Returns:
      ``net``.
    """
    if not isinstance(net, Net):
        raise TypeError(f"net: expected a partax.Net, got {type(net).__name__}")
    if net.num_hidden < 1:
        raise ValueError("net: expected at least one hidden layer" if net.is_mlp else
                         "net: expected at least one code site (a ReLU, leaky ReLU, hard-tanh or max-pool layer)")
    if net.stack_shape and not stacked:
        raise ValueError(f"net: {caller} takes an unstacked Net; index it first (net[i])")
    if len(net.stack_shape) > 1:
        raise ValueError(f"net: expected at most one stack axis, got stack shape {net.stack_shape}")
    return net


# --- inputs -------------------------------------------------------------------------------
def check_inputs(x, dim: int | None = None, name: str = "x"):
    """A 2-D numeric batch of inputs, ``dim`` columns if given.

    Args:
      x: a NumPy or JAX array (anything else goes through ``np.asarray``).
      dim: the expected number of columns (the net's input dimension), or None.
      name: the argument's name in the messages.

    Returns:
      ``x`` (a NumPy or JAX array, dtype unchanged). Finiteness is checked where the
      inputs are used (:func:`check_finite`, on the kernel's flags).
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if dim is None and x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (N, d_in), got shape {tuple(x.shape)}")
    if dim is not None and (x.ndim != 2 or x.shape[1] != dim):
        raise ValueError(f"{name}: expected shape (N, {dim}), got {tuple(x.shape)}")
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == bool):
        raise TypeError(f"{name}: expected a numeric array, got dtype {x.dtype}")
    return x


def check_finite_inputs(x, dim: int, name: str = "x") -> np.ndarray:
    """A 2-D numeric NumPy batch of ``dim`` columns with finite entries (geometry's inputs).

    Args:
      x: the inputs (anything ``np.asarray`` takes).
      dim: the expected number of columns.
      name: the argument's name in the messages.

    Returns:
      ``np.asarray(x)`` (its dtype unchanged).
    """
    x = np.asarray(check_inputs(np.asarray(x), dim, name))
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: expected finite inputs (found NaN or inf)")
    return x


def nonfinite_error(name: str, index: int, detail: str = "") -> ValueError:
    """The error for input ``index`` (a stream index) holding a NaN or inf coordinate.

    Args:
      name: the argument's name (``"x"``, ``"source"``).
      index: the input's index, and any words that place it (``"17 of process 1's inputs"``).
      detail: more words after the coordinate (e.g. ``" (3 in step 2)"``).

    Returns:
      The ``ValueError`` (to raise, or to report to other processes).
    """
    return ValueError(f"{name}: input {index} has a NaN or inf coordinate{detail}; expected finite inputs")


def check_finite(finite, name: str = "x", start: int = 0) -> None:
    """Raises :func:`nonfinite_error` for the first input whose ``finite`` flag is False.

    Args:
      finite: ``bool[N]`` per input (all coordinates finite), e.g. from the codes kernel.
      name: the argument's name.
      start: the stream index of ``finite[0]``.
    """
    finite = np.asarray(finite)
    if not finite.all():
        raise nonfinite_error(name, start + int(np.flatnonzero(~finite)[0]))


# --- labels, keys, counts -----------------------------------------------------------------
def check_labels(labels, n: int, num_classes: int | None = None, name: str = "labels") -> np.ndarray:
    """Class labels as ``int64[n]`` in ``0..num_classes-1`` (``0..`` if not given).

    Args:
      labels: one label per input (integers, bools, or integer-valued floats).
      n: the number of inputs.
      num_classes: the number of classes, or None (any label ``>= 0``).
      name: the argument's name in the messages.

    Returns:
      ``int64[n]``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},) (one label per input), got {labels.shape}")
    if labels.dtype == bool:
        labels = labels.astype(np.int64)
    elif np.issubdtype(labels.dtype, np.floating):
        if n and not (np.isfinite(labels).all() and (labels == np.round(labels)).all()):
            raise TypeError(f"{name}: expected integer class labels, got dtype {labels.dtype} with non-integer values")
        labels = labels.astype(np.int64)
    elif not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name}: expected integer class labels, got dtype {labels.dtype}")
    elif n and np.issubdtype(labels.dtype, np.unsignedinteger) and int(labels.max()) >= 2**63:
        raise ValueError(f"{name}: expected labels below 2^63, got {int(labels.max())}")
    labels = labels.astype(np.int64, copy=False)
    if n and labels.min() < 0:
        raise ValueError(f"{name}: expected labels >= 0, got {int(labels.min())}")
    if num_classes is not None and n and labels.max() >= num_classes:
        raise ValueError(
            f"{name}: expected labels in 0..{num_classes - 1} (num_classes={num_classes}), got {int(labels.max())}"
        )
    return labels


def check_labels_below(labels, bits: int, why: str, name: str = "labels") -> None:
    """Raises if a label is ``>= 2^bits`` (e.g. labels that travel as 32-bit words).

    Args:
      labels: integer labels (already checked by :func:`check_labels`), or None.
      bits: the limit's exponent.
      why: the reason, for the message.
      name: the argument's name.
    """
    if labels is not None and len(labels) and int(np.max(labels)) >= 2**bits:
        raise ValueError(f"{name}: expected labels below 2^{bits} ({why}), got {int(np.max(labels))}")


def check_num_classes(num_classes) -> int | None:
    """``num_classes``: None or a positive int."""
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    return int(num_classes)


def check_keys(keys, name: str = "keys") -> np.ndarray:
    """Region keys as ``uint64[N]`` (a 1-D array of ``uint64``, or of integers ``>= 0``)."""
    keys = np.asarray(keys)
    ok = keys.dtype == np.uint64 or (np.issubdtype(keys.dtype, np.integer) and (keys.size == 0 or keys.min() >= 0))
    if keys.ndim != 1 or not ok:
        raise ValueError(f"{name}: expected a 1-D array of uint64 keys, got dtype {keys.dtype}, shape {keys.shape}")
    return keys.astype(np.uint64, copy=False)


def check_indices(indices, n: int, name: str = "indices") -> np.ndarray:
    """Stream indices (e.g. a table's exemplars) as ``int64``, each in ``0..n-1``."""
    idx = np.asarray(indices, np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"{name}: expected indices in 0..{n - 1}")
    return idx


def check_positive_int(n, name: str = "n") -> int:
    """``n`` as an int ``>= 1`` (a count: inputs, inputs per centre, batch size)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name}: expected a positive int, got {n!r}")
    return int(n)


def check_batch_size(batch_size, block: int = 1) -> int:
    """A chunk size: a positive int, a multiple of a sampler's ``block`` (1 otherwise)."""
    batch_size = check_positive_int(batch_size, "batch_size")
    if batch_size % block:
        raise ValueError(f"batch_size: expected a multiple of the sampler's block ({block}), got {batch_size}")
    return batch_size


# --- scopes, layers, flags ----------------------------------------------------------------
def check_scope(scope) -> str:
    """One scope name, ``"layer"``, ``"prefix"`` or ``"suffix"``."""
    if scope not in SCOPES:
        raise ValueError(f"scope: expected one of {SCOPES}, got {scope!r}")
    return scope


def check_scopes(scopes) -> tuple:
    """A non-empty set of scope names (a string is one scope), in the order of ``SCOPES``."""
    if isinstance(scopes, str):
        scopes = (scopes,)
    scopes = tuple(scopes)
    if not scopes:
        raise ValueError(f"scopes: expected a non-empty subset of {SCOPES}")
    for s in scopes:
        if s not in SCOPES:
            raise ValueError(f"scopes: unknown scope {s!r}; expected a subset of {SCOPES}")
    return tuple(s for s in SCOPES if s in scopes)


def check_layer(layer, num_layers: int, name: str = "layer", *, none_is_last: bool = False) -> int:
    """A 1-based hidden layer ``1..num_layers`` as an int (None is the last one if ``none_is_last``)."""
    if layer is None and none_is_last:
        return int(num_layers)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 1 <= layer <= num_layers:
        raise ValueError(f"{name}: expected a hidden layer in 1..{num_layers} (1-based), got {layer!r}")
    return int(layer)


def check_scope_layer(scope, layer, num_layers: int) -> tuple:
    """``(layer, first, last)``: a scope name, its 1-based layer (None: the last one) and the
    inclusive range of layers it spans (:func:`partax.scopes.scope_range`)."""
    scope = check_scope(scope)
    layer = check_layer(layer, num_layers, none_is_last=True)
    first, last = scope_range(scope, layer, num_layers)
    return layer, int(first), int(last)


def check_positive(value, name: str) -> float:
    """A finite number ``> 0`` (a reach, a radius cap), as a float."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if isinstance(value, bool) or not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return v


def check_tolerance(value, name: str = "boundary_tol") -> float:
    """A tolerance: a finite number ``>= 0``, as a float."""
    if isinstance(value, bool) or not (isinstance(value, (int, float, np.floating, np.integer))
                                       and np.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


def check_flag(value, name: str) -> bool:
    """A bool (Python or NumPy), as a Python bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {value!r}")
    return bool(value)


def check_finite_vector(a, name: str, dim: int | None, dtype) -> tuple:
    """A finite scalar or vector parameter (a sampler's bounds, mean, scale).

    Args:
      a: the value.
      name: the argument's name.
      dim: the expected length of a vector, or None (any length).
      dtype: the dtype to convert to.

    Returns:
      ``(array, dim)``: the array, and the dimension it implies (``dim`` for a scalar).
    """
    a = np.asarray(a, dtype)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: expected finite values, got {a!r}")
    if a.ndim == 0:
        return a, dim
    if a.ndim != 1 or (dim is not None and a.shape[0] != dim):
        raise ValueError(f"{name}: expected a scalar or a vector of length {dim or 'd'}, got shape {a.shape}")
    return a, a.shape[0]


def check_vector(v, name: str, dim: int | None = None) -> np.ndarray:
    """A finite vector (a point, a direction) as ``float64[dim]`` (any length if ``dim`` is None).

    Args:
      v: the vector.
      name: the argument's name in the messages.
      dim: its expected length, or None.

    Returns:
      ``float64[dim]``.
    """
    v = np.asarray(v, np.float64)
    if v.ndim != 1 or (dim is not None and v.shape[0] != dim):
        want = f"({dim},)" if dim is not None else "(d,)"
        raise ValueError(f"{name}: expected a vector of shape {want}, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return v
