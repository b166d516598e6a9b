"""Extraction against independent paths: plain rasterio window reads and rasterio.warp.reproject."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, reproject
from rasterio.windows import from_bounds

from oxeo_flows.extract import SOURCE_READS, load_day, read_asset
from oxeo_flows.tiling import Tile
from tests.helpers import S2, make_s2_scene

T0 = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
TILE = Tile(33, False, 10_000, 49, 499)  # 490000..500000 x 4990000..5000000, scene overlaps its SE part


def _window_read(
    href: str, geobox_bounds: tuple[float, float, float, float], shape: tuple[int, int]
) -> np.ndarray:
    """Independent reference: a boundless windowed read with rasterio onto the tile window."""
    with rasterio.open(href) as src:
        win = from_bounds(*geobox_bounds, transform=src.transform)
        return src.read(
            1,
            window=win,
            out_shape=shape,
            boundless=True,
            fill_value=0,
            resampling=Resampling.nearest,
        )


def test_same_grid_is_bit_identical_to_windowed_read(tmp_path: Path) -> None:
    scene, arrays = make_s2_scene(tmp_path, "a", T0)
    gb = TILE.geobox(10)
    for band in ("green", "swir16", "scl"):
        got = read_asset(scene.assets[band], gb)
        ref = _window_read(scene.assets[band].href, gb.boundingbox, gb.shape)
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, ref.astype(np.uint16))
    # and the scene's pixels sit exactly where its transform says: scene UL (498500, 4991500)
    got = read_asset(scene.assets["green"], gb)
    col, row = (498_500 - 490_000) // 10, (5_000_000 - 4_991_500) // 10
    np.testing.assert_array_equal(got[row : row + 120, col : col + 120], arrays["green"])
    assert int(got.sum(dtype=np.uint64)) == int(arrays["green"].sum(dtype=np.uint64))  # nothing elsewhere


def test_20m_band_is_replicated_not_interpolated(tmp_path: Path) -> None:
    scene, arrays = make_s2_scene(tmp_path, "a", T0)
    got = read_asset(scene.assets["swir16"], TILE.geobox(10))
    row, col = 850, 850
    block = got[row : row + 120, col : col + 120]
    expect = np.repeat(np.repeat(arrays["swir16"], 2, axis=0), 2, axis=1)[: block.shape[0], : block.shape[1]]
    np.testing.assert_array_equal(block, expect)


def test_neighbouring_zone_equals_rasterio_reproject(tmp_path: Path) -> None:
    # Scene in zone 34 (EPSG:32634) just east of the 18E meridian, tile in zone 33 extended across it.
    from pyproj import Transformer

    t = Transformer.from_crs(32633, 32634, always_xy=True)
    tile = Tile(33, False, 10_000, 77, 499)
    x34, y34 = t.transform(772_000, 4_994_000)
    origin = (round(x34 / 20) * 20, round(y34 / 20) * 20)
    scene, arrays = make_s2_scene(tmp_path, "z34", T0, epsg=32634, origin=origin, size_10m=200)
    gb = tile.geobox(10)
    for band, resampling in (("green", "nearest"), ("swir16", "bilinear"), ("scl", "nearest")):
        got = read_asset(scene.assets[band], gb, resampling)
        ref = np.zeros(gb.shape, dtype=arrays[band].dtype)
        with rasterio.open(scene.assets[band].href) as src:
            reproject(
                rasterio.band(src, 1),
                ref,
                src_nodata=0,
                dst_transform=gb.affine,
                dst_crs="EPSG:32633",
                dst_nodata=0,
                resampling=Resampling[resampling],
            )
        assert (got > 0).sum() > 10_000  # the scene really lands on the tile
        np.testing.assert_array_equal(got, ref.astype(np.uint16))


def test_same_day_scenes_fuse_first_valid_in_time_order(tmp_path: Path) -> None:
    n = 120
    a = np.full((n, n), 100, np.uint16)
    a[:, 60:] = 0  # west half only
    b = np.full((n, n), 200, np.uint16)
    fills = {"green": a}
    s1, _ = make_s2_scene(tmp_path / "1", "s1", T0, fill=fills)
    s2, _ = make_s2_scene(tmp_path / "2", "s2", T0.replace(second=2), fill={"green": b})
    gb = TILE.geobox(10)
    out = load_day([s2, s1], S2, gb)  # order given must not matter
    g = out.data[S2.bands.index("green")][850:970, 850:970]
    assert (g[:, :60] == 100).all() and (g[:, 60:] == 200).all()
    assert out.meta.item_ids == ("s1", "s2")
    assert out.meta.time == T0


def test_fusing_different_dn_offsets_shifts_into_first_convention(tmp_path: Path) -> None:
    n = 120
    a = np.zeros((n, n), np.uint16)
    a[:, :60] = 1500  # offset -1000 convention: reflectance 0.05
    b = np.full((n, n), 500, np.uint16)  # pre-subtracted: reflectance 0.05
    s1, _ = make_s2_scene(tmp_path / "1", "s1", T0, fill={"green": a}, dn_offset=-1000)
    s2, _ = make_s2_scene(tmp_path / "2", "s2", T0.replace(second=1), fill={"green": b}, dn_offset=0)
    out = load_day([s1, s2], S2, TILE.geobox(10))
    gi = S2.bands.index("green")
    g = out.data[gi][850:970, 850:970]
    assert (g == 1500).all()  # b shifted by +1000 into a's convention
    assert out.meta.offset[gi] == pytest.approx(-0.1)
    refl = g.astype(np.float64) * out.meta.scale[gi] + out.meta.offset[gi]
    np.testing.assert_allclose(refl, 0.05, atol=1e-12)


def test_reads_are_counted(tmp_path: Path) -> None:
    scene, _ = make_s2_scene(tmp_path, "a", T0)
    before = SOURCE_READS.value
    load_day([scene], S2, TILE.geobox(10))
    assert SOURCE_READS.value - before == len(S2.bands)


def test_valid_fraction_is_share_of_tile_with_data(tmp_path: Path) -> None:
    scene, _ = make_s2_scene(tmp_path, "a", T0)
    out = load_day([scene], S2, TILE.geobox(10))
    assert out.meta.valid_fraction == pytest.approx(120 * 120 / 1_000_000)


def test_missing_local_file_fails_at_once_naming_band_and_path(tmp_path: Path) -> None:
    from dataclasses import replace

    from oxeo_flows.errors import SourceError
    from oxeo_flows.extract import SOURCE_RETRIES, ReadPolicy

    scene, _ = make_s2_scene(tmp_path, "a", T0)
    gone = replace(scene.assets["red"], href=str(tmp_path / "gone.tif"))
    retries = SOURCE_RETRIES.value
    with pytest.raises(SourceError) as err:
        read_asset(gone, TILE.geobox(10), policy=ReadPolicy(retries=5, retry_delay_s=60), context="scene a")
    assert str(err.value).startswith(
        f"scene a band red: cannot read {tmp_path / 'gone.tif'} after 1 attempt(s): "
    )
    assert SOURCE_RETRIES.value == retries  # local files are not retried (no 60 s sleep either)


def test_optional_band_missing_from_a_scene_stays_no_data(tmp_path: Path) -> None:
    """An optional band (Landsat's thermal, here S2's nir08 declared optional) that one scene of the day
    lacks comes from the scene that has it; a day where none has it keeps it 0 with NaN scale/offset;
    the valid fraction counts the required bands only."""
    from dataclasses import replace

    opt = replace(S2, thermal_band="nir08")
    assert opt.optional_bands == ("nir08",) and "nir08" not in opt.required_bands
    ni = opt.bands.index("nir08")
    s1, _ = make_s2_scene(tmp_path / "1", "s1", T0)
    s1 = replace(s1, assets={k: v for k, v in s1.assets.items() if k != "nir08"})
    s2, arr2 = make_s2_scene(tmp_path / "2", "s2", T0.replace(second=2), seed=1, dn_offset=0)
    gb = TILE.geobox(10)
    both = load_day([s1, s2], opt, gb)
    full = load_day([s2], opt, gb)
    np.testing.assert_array_equal(both.data[ni], full.data[ni])  # nir08 only from s2
    assert both.meta.scale[ni] == s2.assets["nir08"].scale and both.meta.offset[ni] == 0.0
    gi = opt.bands.index("green")
    assert both.meta.offset[gi] == pytest.approx(-0.1)  # the day's first scene (s1) sets the others
    alone = load_day([s1], opt, gb)
    assert not alone.data[ni].any()
    assert np.isnan(alone.meta.scale[ni]) and np.isnan(alone.meta.offset[ni])
    assert alone.meta.valid_fraction == pytest.approx(120 * 120 / 1_000_000)
    with pytest.raises(ValueError, match=r"lack required band\(s\) \['nir08'\]"):
        load_day([s1], S2, gb)  # where nir08 is required


def test_bands_parameter_reads_only_the_archive_bands(tmp_path: Path) -> None:
    scene, _ = make_s2_scene(tmp_path, "a", T0)
    gb = TILE.geobox(10)
    old = tuple(b for b in S2.bands if b != "nir08")  # e.g. a store created before nir08 was added
    before = SOURCE_READS.value
    out = load_day([scene], S2, gb, bands=old)
    assert SOURCE_READS.value - before == len(old)
    ref = load_day([scene], S2, gb)
    keep = [S2.bands.index(b) for b in old]
    np.testing.assert_array_equal(out.data, ref.data[keep])
    assert out.meta.scale == tuple(ref.meta.scale[i] for i in keep)
