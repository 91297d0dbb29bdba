"""Scopes: which contiguous range of the code sequence ``(S^1, ..., S^L)`` a table is about.

At hidden layer ``l`` (1-based) of a net with ``L`` hidden layers:

* ``"layer"``: ``S^l`` alone (bins of the representation ``h^l``);
* ``"prefix"``: ``S^1..S^l`` (the linear region, in input space, of the sub-net up to ``l``);
* ``"suffix"``: ``S^l..S^L`` (the partition of layer ``l``'s input space by the rest of
  the net; the natural bins of the latent space ``h^{l-1}``).

Scope/layer pairs that name the same range share one table: ``layer`` at 1 is ``prefix`` at
1, ``suffix`` at ``L`` is ``layer`` at ``L``, ``suffix`` at 1 is ``prefix`` at ``L``. These
are plain functions of integers (no arrays); :mod:`partax.coding` re-exports them.

Example:
    >>> from partax.scopes import scope_range, tables_for
    >>> scope_range("suffix", 2, 3)
    (2, 3)
    >>> ranges, index = tables_for(("layer", "suffix"), 2)
    >>> ranges, index[("suffix", 2)]
    (((1, 1), (2, 2), (1, 2)), 1)
"""

from __future__ import annotations

__all__ = ["SCOPES", "scope_range", "tables_for"]

SCOPES = ("layer", "prefix", "suffix")


def scope_range(scope: str, layer: int, num_layers: int) -> tuple[int, int]:
    """The 1-based inclusive range of layers ``(first, last)`` of a scope at ``layer``.

    Args:
      scope: ``"layer"``, ``"prefix"`` or ``"suffix"``.
      layer: the hidden layer, ``1..num_layers``.
      num_layers: the net's number of hidden layers ``L``.

    Returns:
      ``(first, last)``.
    """
    if scope == "layer":
        return layer, layer
    if scope == "prefix":
        return 1, layer
    if scope == "suffix":
        return layer, num_layers
    raise ValueError(f"scope: expected one of {SCOPES}, got {scope!r}")


def tables_for(scopes, num_layers: int) -> tuple:
    """The distinct layer ranges behind ``(scope, layer)`` pairs, and where each pair maps.

    Args:
      scopes: scope names.
      num_layers: the net's number of hidden layers ``L``.

    Returns:
      ``(ranges, index)``: ``ranges`` a tuple of distinct ``(first, last)``; ``index`` a
      dict ``(scope, layer) -> position in ranges``.
    """
    ranges, index = [], {}
    for scope in scopes:
        for l in range(1, num_layers + 1):
            r = scope_range(scope, l, num_layers)
            if r not in ranges:
                ranges.append(r)
            index[(scope, l)] = ranges.index(r)
    return tuple(ranges), index
