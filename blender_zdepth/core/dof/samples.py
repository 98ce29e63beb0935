"""Sparse extra samples of the padded frame (:class:`Samples`): the edge split's other parts
and the hidden surfaces, each at its own pixel, colour, coverage and radius, next to the
pixels' own samples."""

from typing import NamedTuple

import numpy as np
from numpy import float32 as _F32


class Samples(NamedTuple):
    """Sparse extra samples (edge splits, hidden surfaces): flat index into the padded frame
    (int64, n), premultiplied colour (float32, (4, n)), coverage (float32, n) and signed
    radius (float32, n)."""

    idx: np.ndarray
    col: np.ndarray
    cov: np.ndarray
    coc: np.ndarray


def _samples(idx, col, cov, coc):
    """:class:`Samples` with the engine's dtypes."""
    return Samples(idx.astype(np.int64), col.astype(_F32), cov.astype(_F32), coc.astype(_F32))


def _concat_samples(parts):
    """One :class:`Samples` from a list of them (in order; empty ones skipped)."""
    parts = [p for p in parts if p.idx.size]
    if not parts:
        return Samples(np.zeros(0, np.int64), np.zeros((4, 0), _F32), np.zeros(0, _F32),
                       np.zeros(0, _F32))
    return Samples(np.concatenate([p.idx for p in parts]),
                   np.concatenate([p.col for p in parts], axis=1),
                   np.concatenate([p.cov for p in parts]),
                   np.concatenate([p.coc for p in parts]))


def _samples_where(samples, keep):
    """The samples whose ``keep`` is True."""
    if keep.all():
        return samples
    return Samples(samples.idx[keep], samples.col[:, keep], samples.cov[keep],
                   samples.coc[keep])
