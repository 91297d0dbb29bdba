"""Result records print as one short line of sizes and key numbers, never as a dump of arrays."""

import jax
import numpy as np
import pytest

import partax
import partax.geometry as g


@pytest.fixture(scope="module")
def net():
    return partax.nets.mlp(jax.random.PRNGKey(3), [2, 6, 5, 3])


@pytest.fixture(scope="module")
def box():
    return g.Box(-np.ones(2), np.ones(2))


@pytest.fixture(scope="module")
def points(net, box):
    return g.enumerate_regions(net, box, progress=False).points


def _records(net, box, points):
    x = points[:4]
    plane = g.Plane(np.zeros(2), np.array([1.0, 0.0]), np.array([0.0, 1.0]), extent=((-1.0, 1.0), (-1.0, 1.0)))
    return {
        "Net": (net, "2-6-5-3"),
        "Codes": (partax.codes(net, x), "N=4, widths=(6, 5)"),
        "stacked Net": (partax.nets.stack_nets([net, net]), "stack=(2,)"),
        "Enumeration": (g.enumerate_regions(net, box, progress=False), f"regions={len(points)}"),
        "LocalMaps": (g.local_maps(net, x), "inputs=4"),
        "ChebyshevResult": (g.chebyshev(net, x, domain=box, solver="highs", return_status=True), "polytopes=4"),
        "VolumeResult": (g.volumes(net, x, domain=box, return_status=True), "regions=4"),
        "FacetsResult": (g.facets(net, x, domain=box, return_status=True), "regions=4"),
        "NeighborsResult": (g.neighbors(net, x, domain=box, return_status=True), "regions=4"),
        "LineRegions": (g.line_regions(net, -np.ones(2), np.ones(2)), "pieces="),
        "SliceRegions": (g.slice_regions(net, plane), "cells="),
        "LPResult": (g.lp.solve(np.array([[1.0]]), np.array([[[1.0]], ]), np.array([[1.0]])), "lps=1"),
        "TangentSensitivity": (partax.tropical.tangent_sensitivity(net, x), "inputs=4"),
        "LinearTerms": (partax.tropical.linear_terms(net, x), "inputs=4"),
        "CompressionReport": (partax.compress(net, box)[1], "units="),
    }


def test_records_print_short(net, box, points):
    for name, (record, expected) in _records(net, box, points).items():
        text = repr(record)
        assert expected in text, (name, text)
        assert "array(" not in text and "Array(" not in text and "\n" not in text, (name, text)
        assert len(text) < 320, (name, text)
