"""Archive layout, commit protocol, incremental writes in both directions, xarray/rioxarray readability."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from oxeo_flows.archive import NAT, Archive, SliceMeta, archive_path, open_archive
from oxeo_flows.constellations import CONSTELLATIONS
from oxeo_flows.errors import InputError
from oxeo_flows.tiling import Tile

S2 = CONSTELLATIONS["sentinel-2"]
L8 = CONSTELLATIONS["landsat-8"]
TILE = Tile(33, False, 10_000, 49, 499)


def _slice(value: int, shape: tuple[int, int] = (1000, 1000)) -> np.ndarray:
    return np.full((len(S2.bands), *shape), value, dtype=np.uint16)


def _meta(day: date, hour: int = 10) -> SliceMeta:
    return SliceMeta(
        time=datetime(day.year, day.month, day.day, hour, 0, 1, 123456, tzinfo=UTC),
        solar_day=day,
        item_ids=(f"item-{day}",),
        processing_baseline="05.10",
        scale=tuple(1.0 if b == "scl" else 1e-4 for b in S2.bands),
        offset=tuple(0.0 if b == "scl" else -0.1 for b in S2.bands),
        valid_fraction=0.5,
    )


def test_layout_and_grid_metadata(tmp_path: Path) -> None:
    arc = Archive(str(tmp_path), TILE, S2)
    assert arc.path == f"{tmp_path}/33_T_10000_49_499/sentinel-2.zarr"
    arc.write_slice(_slice(7), _meta(date(2024, 1, 5)))
    ds = xr.open_zarr(arc.path, consolidated=False)
    assert ds["data"].dims == ("time", "band", "y", "x")
    assert ds["data"].dtype == np.uint16
    assert list(ds["band"].values) == list(S2.bands)
    assert ds["x"].values[0] == 490_005.0 and ds["x"].values[-1] == 499_995.0
    assert ds["y"].values[0] == 4_999_995.0 and ds["y"].values[-1] == 4_990_005.0
    assert ds["time"].values[0] == np.datetime64("2024-01-05T10:00:01.123456", "ns")
    import rioxarray  # noqa: F401  (registers .rio)

    da = ds["data"]
    assert da.rio.crs.to_epsg() == 32633
    assert tuple(da.rio.transform())[:6] == (10.0, 0.0, 490_000.0, 0.0, -10.0, 5_000_000.0)


def test_incremental_both_directions_and_sorted_reads(tmp_path: Path) -> None:
    arc = Archive(str(tmp_path), TILE, S2)
    days = [
        date(2024, 3, 1),
        date(2024, 4, 1),
        date(2024, 1, 1),
        date(2024, 5, 1),
        date(2023, 12, 1),
    ]
    for i, d in enumerate(days):
        assert arc.write_slice(_slice(i + 1), _meta(d)) == i  # appended in arrival order
    ds = open_archive(arc.path)
    assert [str(t)[:10] for t in ds["time"].values] == sorted(str(d) for d in days)
    # each slice carries its own pixels
    by_day = {d: i + 1 for i, d in enumerate(days)}
    for t, block in zip(ds["time"].values, ds["data"].values, strict=True):
        assert (block == by_day[date.fromisoformat(str(t)[:10])]).all()


def test_rewriting_a_committed_day_is_refused(tmp_path: Path) -> None:
    arc = Archive(str(tmp_path), TILE, S2)
    assert arc.write_slice(_slice(1), _meta(date(2024, 1, 1))) == 0
    assert arc.write_slice(_slice(2), _meta(date(2024, 1, 1), hour=11)) is None
    assert (arc.read_slice(0) == 1).all()
    assert len(arc.committed()) == 1


def test_uncommitted_slot_is_invisible_and_reused(tmp_path: Path) -> None:
    """Simulate a crash after pixels were written but before the time commit marker."""
    import zarr

    arc = Archive(str(tmp_path), TILE, S2)
    arc.write_slice(_slice(1), _meta(date(2024, 1, 1)))
    g = zarr.open_group(arc.path, mode="r+", zarr_format=3)
    for _, a in g.arrays():
        if (a.metadata.dimension_names or ("",))[0] == "time":
            a.resize((2, *a.shape[1:]))
    g["data"][1] = _slice(9)  # pixels of the crashed write
    g["solar_day"][1] = 99
    assert g["time"][1] == NAT
    assert list(arc.committed()) == [date(2024, 1, 1)]
    assert open_archive(arc.path).sizes["time"] == 1
    assert arc.write_slice(_slice(3), _meta(date(2024, 2, 1))) == 1  # the slot is reused
    ds = open_archive(arc.path)
    assert ds.sizes["time"] == 2 and (ds["data"].values[1] == 3).all()


def test_crash_mid_resize_is_repaired_by_next_writer(tmp_path: Path) -> None:
    import zarr

    arc = Archive(str(tmp_path), TILE, S2)
    arc.write_slice(_slice(1), _meta(date(2024, 1, 1)))
    g = zarr.open_group(arc.path, mode="r+", zarr_format=3)
    g["data"].resize((3, *g["data"].shape[1:]))  # only one array grew
    arc.write_slice(_slice(2), _meta(date(2024, 1, 2)))
    ds = open_archive(arc.path)
    assert ds.sizes["time"] == 2
    assert [int(v) for v in ds["data"].values[:, 0, 0, 0]] == [1, 2]


def test_slice_metadata_round_trip(tmp_path: Path) -> None:
    arc = Archive(str(tmp_path), TILE, S2)
    m = _meta(date(2024, 1, 1))
    arc.write_slice(_slice(1), m)
    assert arc.slice_meta(0) == m


def test_masks_are_stored_beside_data_with_done_flags(tmp_path: Path) -> None:
    arc = Archive(str(tmp_path), TILE, S2)
    arc.write_slice(_slice(1), _meta(date(2024, 1, 1)))
    arc.write_slice(_slice(2), _meta(date(2024, 1, 2)))
    assert arc.mask_done("mndwi-v1") == {0: False, 1: False}
    m = np.zeros((1000, 1000), np.uint8)
    m[:10] = 1
    arc.write_mask("mndwi-v1", 1, m)
    assert arc.mask_done("mndwi-v1") == {0: False, 1: True}
    np.testing.assert_array_equal(arc.read_mask("mndwi-v1", 1), m)
    assert (arc.read_mask("mndwi-v1", 0) == 255).all()  # unwritten = nodata, never 'dry'
    ds = open_archive(arc.path)
    assert ds["mask_mndwi-v1"].dims == ("time", "y", "x")
    # a later slice grows the mask arrays too
    arc.write_slice(_slice(3), _meta(date(2024, 1, 3)))
    assert arc.mask_done("mndwi-v1") == {0: False, 1: True, 2: False}


def test_wrong_slice_shape_or_dtype_is_refused(tmp_path: Path) -> None:
    arc = Archive(str(tmp_path), TILE, S2)
    with pytest.raises(ValueError, match="uint16"):
        arc.write_slice(_slice(1).astype(np.int32), _meta(date(2024, 1, 1)))
    with pytest.raises(ValueError, match="uint16"):
        arc.write_slice(_slice(1, (999, 1000)), _meta(date(2024, 1, 1)))
    assert not arc.exists() or arc.committed() == {}


def test_landsat_grid_is_30m_on_the_15m_lattice(tmp_path: Path) -> None:
    arc = Archive(str(tmp_path), TILE, L8)
    assert arc.geobox.resolution.x == 30
    assert (arc.geobox.affine.c - 15) % 30 == 0


@pytest.mark.parametrize("bad", ["../etc", "33_T_10000_49_499/../x", "x", ""])
def test_paths_cannot_escape_storage(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InputError):
        archive_path(str(tmp_path), bad, "sentinel-2")
    with pytest.raises(InputError):
        archive_path(str(tmp_path), TILE.id, "../sentinel-2")


def test_times_must_be_timezone_aware(tmp_path: Path) -> None:
    arc = Archive(str(tmp_path), TILE, S2)
    m = _meta(date(2024, 1, 1))
    naive = SliceMeta(
        m.time.replace(tzinfo=None),
        m.solar_day,
        m.item_ids,
        m.processing_baseline,
        m.scale,
        m.offset,
        m.valid_fraction,
    )
    with pytest.raises(ValueError, match="timezone"):
        arc.write_slice(_slice(1), naive)
    assert not arc.exists()


def test_a_store_keeps_the_band_list_it_was_created_with(tmp_path: Path) -> None:
    """A Landsat store made before the thermal band existed goes on with its 7 bands: extraction writes
    7-band slices into it and prediction indexes its bands by name."""
    from dataclasses import replace

    from oxeo_flows.models import get_model
    from oxeo_flows.pipeline import predict_archive

    old = replace(L8, bands=tuple(b for b in L8.bands if b != "lwir11"), thermal_band=None)
    assert len(old.bands) == 7 and len(L8.bands) == 8
    tile = Tile(33, False, 10_000, 49, 499)
    meta = SliceMeta(
        time=datetime(2024, 3, 10, 9, 50, tzinfo=UTC),
        solar_day=date(2024, 3, 10),
        item_ids=("LC08_old",),
        processing_baseline=None,
        scale=tuple(1.0 if b == "qa_pixel" else 2.75e-5 for b in old.bands),
        offset=tuple(0.0 if b == "qa_pixel" else -0.2 for b in old.bands),
        valid_fraction=1.0,
    )
    arc_old = Archive(str(tmp_path), tile, old)
    shape = arc_old.geobox.shape
    data = np.full((7, *shape), round((0.05 + 0.2) / 2.75e-5), np.uint16)  # reflectance 0.05
    data[old.bands.index("green")] = round((0.08 + 0.2) / 2.75e-5)  # MNDWI > 0: water
    data[old.bands.index("qa_pixel")] = 21952  # clear, water
    assert arc_old.write_slice(data, meta) == 0
    arc = Archive(str(tmp_path), tile, L8)  # today's constellation, same store
    assert arc.bands == old.bands
    nxt = replace(meta, time=meta.time.replace(day=26), solar_day=date(2024, 3, 26))
    assert arc.write_slice(data, nxt) == 1
    with pytest.raises(ValueError, match="slice must be uint16"):
        arc.write_slice(np.zeros((8, *shape), np.uint16), replace(nxt, solar_day=date(2024, 4, 11)))
    assert Archive(str(tmp_path / "new"), tile, L8).bands == L8.bands  # a new store: all 8
    assert predict_archive(tile.id, "landsat-8", get_model("mndwi"), str(tmp_path)) == 2
    assert (arc.read_mask("mndwi-v1", 0) == 1).all() and (arc.read_mask("mndwi-v1", 1) == 1).all()
