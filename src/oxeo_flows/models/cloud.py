"""Cloud, shadow and no-data masks from the products' own classification bands.

- Sentinel-2 L2A SCL classes: 0 no data, 1 saturated/defective, 2 dark area, 3 cloud shadow,
  4 vegetation, 5 bare soil, 6 water, 7 unclassified, 8/9 cloud medium/high probability, 10 thin
  cirrus, 11 snow. Invalid by default: {1, 3, 8, 9, 10} as cloud/shadow/defective; 0 is no data.
  Class 2 is NOT masked (dark water often lands there); 11 is optional.
- Landsat Collection 2 QA_PIXEL bits: 0 fill (no data), 1 dilated cloud, 2 cirrus (OLI), 3 cloud,
  4 cloud shadow, 5 snow. Invalid by default: bits 1, 2, 3, 4.
"""

from __future__ import annotations

import numpy as np

SCL_NODATA = 0
SCL_INVALID_DEFAULT = frozenset({1, 3, 8, 9, 10})
QA_FILL_BIT = 0
QA_INVALID_BITS_DEFAULT = (1, 2, 3, 4)


def scl_masks(
    scl: np.ndarray, invalid: frozenset[int] = SCL_INVALID_DEFAULT
) -> tuple[np.ndarray, np.ndarray]:
    """(nodata, cloud) boolean masks from an SCL array."""
    nodata = scl == SCL_NODATA
    cloud = np.isin(scl, np.fromiter(invalid, dtype=scl.dtype)) & ~nodata
    return nodata, cloud


def qa_pixel_masks(
    qa: np.ndarray, invalid_bits: tuple[int, ...] = QA_INVALID_BITS_DEFAULT
) -> tuple[np.ndarray, np.ndarray]:
    """(nodata, cloud) boolean masks from a Landsat C2 QA_PIXEL array (0 also counts as no data)."""
    q = qa.astype(np.uint16)
    nodata = ((q >> QA_FILL_BIT) & 1).astype(bool) | (q == 0)
    bits = np.uint16(sum(1 << b for b in invalid_bits))
    cloud = ((q & bits) != 0) & ~nodata
    return nodata, cloud
