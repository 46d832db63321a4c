"""A new user's first hour (issue 13, points 1-4): covering unfolds from the library and the command line,
the quick start's round trip, `swt info` on files of several arrays, and geometry messages that say where
each value came from.

References are independent of swt's kernels: np.pad at the far edges and the plain loops of
tests/reference.py; files are real .npy, HDF5 and Zarr files, and the command line runs as installed.
"""

import json

import h5py
import numpy as np
import pytest
import zarr
from clitools import invoke, run_swt
from reference import fold_loops, unfold_loops

from swt_cli import Geometry, SwtError, sliding_window, sliding_window_transpose
from swt_cli.cover import covered_size as cover_size
from swt_cli.geometry import fmt_shape

# ------------------------------------------------------------------------------- library: cover=True


@pytest.mark.parametrize("shape, k, s, p, d, extra", [
    ((2, 14), (4,), (3,), (0,), (1,), (2,)),  # 4 windows reach 0-12: one more needs 16
    ((1, 2, 17, 23), 4, 3, 0, 1, (2, 2)),
    ((2, 10, 7, 8), (3, 3, 3), (2, 2, 2), (0, 0, 0), (1, 1, 1), (1, 0, 1)),
    ((1, 19, 20), (5, 3), (4, 3), 2, (1, 2), (0, 2)),  # dilated: the last window that reaches 21 starts at 21
])
def test_sliding_window_cover_pads_the_far_edges_and_the_transpose_crops(shape, k, s, p, d, extra):
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape) * 1e8 + 3.0  # large values: a wrong summation order shows in the last bits
    g = Geometry.from_args(k, padding=p, stride=s, dilation=d)
    nd = g.ndim
    padded = np.pad(x, [(0, 0)] * (x.ndim - nd) + [(0, e) for e in extra], constant_values=-4.0)
    w = sliding_window(x, k, p, s, d, cover=True, pad_value=-4.0)
    np.testing.assert_array_equal(w, unfold_loops(padded, g.kernel, g.stride, g.padding, g.dilation))
    size = shape[-nd:]
    summed = sliding_window_transpose(w, size, k, p, s, d, cover=True)
    whole = fold_loops(w, padded.shape[-nd:], g.kernel, g.stride, g.padding, g.dilation)
    np.testing.assert_allclose(summed, whole[(...,) + tuple(slice(0, o) for o in size)], rtol=1e-12)
    np.testing.assert_allclose(sliding_window_transpose(w, size, k, p, s, d, reduce="mean", cover=True), x, rtol=1e-12)


def test_sliding_window_cover_refuses_gaps_and_pad_value_alone():
    with pytest.raises(SwtError, match="^kernel 5, stride 7 cannot cover an image by padding its far edges: .*use stride 5$"):
        sliding_window(np.ones((20, 20)), 5, stride=7, cover=True)
    with pytest.raises(SwtError, match=r"^pad_value=3 pads only with cover=True"):
        sliding_window(np.ones((20, 20)), 5, stride=5, pad_value=3)
    with pytest.raises(SwtError, match="cover=True needs output_size"):
        sliding_window_transpose(np.ones((4, 4, 5, 5)), None, 5, stride=5, cover=True)
    w = sliding_window(np.ones((21, 20)), 5, stride=5, cover=True)
    with pytest.raises(SwtError, match=r"not a covering unfold of 30x20"):
        sliding_window_transpose(w, (30, 20), 5, stride=5, cover=True)


# ----------------------------------------------------------------------- command line: swt unfold --cover


def save(path, x):
    """``x`` as a real file of the format its extension names (one array)."""
    path = str(path)
    if path.endswith(".npy"):
        np.save(path, x)
    elif path.endswith(".h5"):
        with h5py.File(path, "w") as f:
            f["data"] = x
    else:
        zarr.save_array(path, x, zarr_format=3)


def load(path):
    path = str(path)
    if path.endswith(".npy"):
        return np.load(path)
    if path.endswith(".h5"):
        with h5py.File(path) as f:
            return f["data"][...]
    return zarr.open_array(path, mode="r")[...]


def geometry_record(path) -> dict:
    path = str(path)
    if path.endswith(".h5"):
        with h5py.File(path) as f:
            return json.loads(f["data"].attrs["swt_geometry"])
    return json.loads(zarr.open_array(path, mode="r").attrs["swt_geometry"])


ROUND_TRIPS = [  # (images' shape, options): odd sizes the window grid does not reach
    ((3, 101), ["-k", "8", "-s", "8"]),
    ((2, 3, 37, 45), ["-k", "8", "-s", "6", "-p", "1"]),
    ((1, 2, 13, 11, 9), ["-k", "4,3,4", "-s", "3,2,4"]),
]


@pytest.mark.parametrize("fmt", [".npy", ".h5", ".zarr"])
@pytest.mark.parametrize("shape, options", ROUND_TRIPS)
def test_unfold_cover_then_fold_mean_gives_every_pixel_back(tmp_path, fmt, shape, options):
    x = np.random.default_rng(sum(shape)).standard_normal(shape) * 1e7  # large values: the mean must still be exact
    save(tmp_path / f"img{fmt}", x)
    nd = options[1].count(",") + 1
    ndim = [] if nd == 2 else ["--ndim", str(nd)]
    plain = invoke("unfold", tmp_path / f"img{fmt}", tmp_path / f"plain{fmt}", *options, *ndim)
    assert plain.exit_code == 0 and "outside every window" in plain.stderr  # this geometry loses edges
    cut = invoke("unfold", tmp_path / f"img{fmt}", tmp_path / f"tiles{fmt}", *options, *ndim, "--cover")
    assert cut.exit_code == 0, cut.stderr
    assert "outside every window" not in cut.stderr
    # .npy keeps no record: the fold takes the geometry, the original size and --cover from the options
    size = ",".join(map(str, shape[-nd:])) + ("," if nd == 1 else "")
    given = [*options, *ndim, "-o", size, "--cover"] if fmt == ".npy" else []
    back = invoke("fold", tmp_path / f"tiles{fmt}", tmp_path / f"back{fmt}", "--reduce", "mean", "-q", *given)
    assert back.exit_code == 0, back.stderr
    assert back.stderr == "" and back.stdout == ""
    np.testing.assert_array_equal(load(tmp_path / f"back{fmt}"), x)
    summed = invoke("fold", tmp_path / f"tiles{fmt}", tmp_path / f"sum{fmt}", "-q", *given)
    assert summed.exit_code == 0, summed.stderr
    g = Geometry.from_args(_opt(options, "-k"), stride=_opt(options, "-s"), padding=_opt(options, "-p") or 0, ndim=nd)
    extra = [c - o for c, o in zip(cover_size(shape[-nd:], g), shape[-nd:])]
    padded = np.pad(x, [(0, 0)] * (x.ndim - nd) + [(0, e) for e in extra])
    whole = fold_loops(unfold_loops(padded, g.kernel, g.stride, g.padding, g.dilation), padded.shape[-nd:], g.kernel,
                       g.stride, g.padding, g.dilation)
    np.testing.assert_allclose(load(tmp_path / f"sum{fmt}"), whole[(...,) + tuple(slice(0, o) for o in shape[-nd:])],
                               rtol=1e-12)
    if fmt != ".npy":
        record = geometry_record(tmp_path / f"tiles{fmt}")
        assert record["cover"] is True and record["image_size"] == list(shape[-nd:])
        assert record["covered_size"] == [o + e for o, e in zip(shape[-nd:], extra)] and any(extra)


def _opt(options, name):
    if name not in options:
        return None
    value = options[options.index(name) + 1]
    return tuple(int(v) for v in value.split(",")) if "," in value else int(value)


WARNING = ("swt: warning: unfold of 477x720 with kernel 64, stride 64 leaves 29 rows and 16 columns (8.2% of the "
           "pixels) outside every window: use --cover, or e.g. --padding 24 or --stride 59,41\n")


@pytest.fixture
def photo(tmp_path):
    """The issue's 477x720 photo size, as a real .npy file."""
    np.save(tmp_path / "photo.npy", np.random.default_rng(5).random((1, 477, 720), np.float32))
    return tmp_path / "photo.npy"


def test_unfold_warns_once_about_lost_edges_and_quiet_silences_it(tmp_path, photo):
    done = run_swt("unfold", photo, tmp_path / "t.h5", "-k", "64", "-s", "64")
    assert done.returncode == 0 and done.stdout == b""
    lines = done.stderr.decode().splitlines(keepends=True)
    assert lines[0] == WARNING
    assert sum("outside every window" in line for line in lines) == 1
    quiet = run_swt("unfold", photo, tmp_path / "q.h5", "-k", "64", "-s", "64", "-q")
    assert quiet.returncode == 0 and quiet.stderr == b"" and quiet.stdout == b""
    covered = invoke("unfold", photo, tmp_path / "c.h5", "-k", "64", "-s", "64", "--cover")
    assert covered.exit_code == 0 and "warning" not in covered.stderr
    exact = invoke("unfold", photo, tmp_path / "e.h5", "-k", "64", "-s", "59,41")  # covers: nothing to say
    assert exact.exit_code == 0 and "warning" not in exact.stderr


def test_strict_makes_lost_edges_an_error(tmp_path, photo):
    done = run_swt("unfold", photo, tmp_path / "t.h5", "-k", "64", "-s", "64", "--strict", "-q")
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode() == "Error: --strict: " + WARNING.removeprefix("swt: warning: ")
    assert not (tmp_path / "t.h5").exists()
    fine = invoke("unfold", photo, tmp_path / "c.h5", "-k", "64", "-s", "64", "--strict", "--cover", "-q")
    assert fine.exit_code == 0 and fine.stderr == ""


def test_cover_refuses_gaps_naming_a_stride_that_covers(tmp_path, photo):
    done = invoke("unfold", photo, tmp_path / "t.h5", "-k", "5", "-s", "7", "--cover")
    assert done.exit_code == 2 and not (tmp_path / "t.h5").exists()
    assert done.stderr == ("Error: --cover: kernel 5, stride 7 cannot cover an image by padding its far edges: along "
                           "height and width, stride 7 exceeds the window span 5, leaving gaps of 2 between windows: "
                           "use stride 5 (see 'swt unfold -h')\n")
    gaps = invoke("unfold", photo, tmp_path / "g.h5", "-k", "5", "-s", "7")
    assert gaps.exit_code == 0
    assert ("swt: warning: unfold of 477x720 with kernel 5, stride 7 leaves 137 rows and 205 columns (49.0% of the "
            "pixels) outside every window, in gaps that padding cannot fill: use --cover with --stride 5, or e.g. "
            "--stride 4,5\n") in gaps.stderr


def test_pad_value(tmp_path):
    x = np.arange(5 * 7, dtype=np.int16).reshape(1, 5, 7)
    np.save(tmp_path / "x.npy", x)
    done = invoke("unfold", tmp_path / "x.npy", tmp_path / "w.zarr", "-k", "3", "-s", "3", "--cover", "--pad-value",
                  "-9", "-q")
    assert done.exit_code == 0, done.stderr
    want = unfold_loops(np.pad(x, [(0, 0), (0, 1), (0, 2)], constant_values=-9), (3, 3), (3, 3), (0, 0), (1, 1))
    np.testing.assert_array_equal(load(tmp_path / "w.zarr"), want)
    alone = invoke("unfold", tmp_path / "x.npy", tmp_path / "a.zarr", "-k", "3", "--pad-value", "1")
    assert alone.exit_code == 2
    assert alone.stderr == ("Error: --pad-value pads only with --cover: add --cover, or leave --pad-value out "
                            "(see 'swt unfold -h')\n")
    wide = invoke("unfold", tmp_path / "x.npy", tmp_path / "b.zarr", "-k", "3", "-s", "3", "--cover", "--pad-value", "0.5")
    assert wide.exit_code == 1 and not (tmp_path / "b.zarr").exists()
    assert wide.stderr == "Error: pad value 0.5 does not fit int16: use a value the images' dtype holds\n"
    nosize = invoke("fold", tmp_path / "w.zarr", tmp_path / "n.npy", "-k", "3", "-s", "3", "--cover")
    assert nosize.exit_code == 0  # the record's image size
    np.testing.assert_array_equal(np.load(tmp_path / "n.npy")[0, 4, 6], x[0, 4, 6])


def test_fold_cover_of_a_file_without_record_needs_the_size(tmp_path):
    np.save(tmp_path / "w.npy", np.ones((2, 3, 3, 3)))
    done = invoke("fold", tmp_path / "w.npy", tmp_path / "y.npy", "-k", "3", "-s", "3", "--cover")
    assert done.exit_code == 2
    assert done.stderr == ("Error: --cover needs --output-size: the size of the images before swt unfold --cover padded "
                           "them (see 'swt fold -h')\n")


def test_unfold_file_cover_from_python(tmp_path):
    from swt_cli import fold_file, unfold_file

    x = np.random.default_rng(2).random((2, 1, 23, 17))
    np.save(tmp_path / "x.npy", x)
    notes: list = []
    cut = unfold_file(str(tmp_path / "x.npy"), str(tmp_path / "w.h5"), kernel=5, stride=5, note=notes.append)
    assert notes == ["warning: unfold of 23x17 with kernel 5, stride 5 leaves 3 rows and 2 columns (23.3% of the pixels) "
                     "outside every window: use --cover, or e.g. --padding 2 or --stride 3"]
    assert cut.shape == (2, 1, 4, 3, 5, 5)
    with pytest.raises(SwtError, match="^--strict: unfold of 23x17"):
        unfold_file(str(tmp_path / "x.npy"), str(tmp_path / "s.h5"), kernel=5, stride=5, strict=True)
    cut = unfold_file(str(tmp_path / "x.npy"), str(tmp_path / "c.h5"), kernel=5, stride=5, cover=True, note=notes.append)
    assert cut.shape == (2, 1, 5, 4, 5, 5) and cut.geometry["image_size"] == [23, 17] and len(notes) == 1
    back = fold_file(cut.output, str(tmp_path / "b.zarr"), reduce="mean")
    assert back.shape == x.shape and back.sources["output_size"] == "record"
    np.testing.assert_array_equal(load(tmp_path / "b.zarr"), x)
    # The original size given is a crop too; the covered size is the plain fold of the padded images.
    same = fold_file(cut.output, str(tmp_path / "s.npy"), reduce="mean", output_size=(23, 17))
    assert same.shape == x.shape and same.sources["output_size"] == "option"
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), x)
    whole = fold_file(cut.output, str(tmp_path / "p.npy"), reduce="mean", output_size=(25, 20))
    assert whole.shape == (2, 1, 25, 20)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), np.pad(x, [(0, 0), (0, 0), (0, 2), (0, 3)]))
    from swt_cli import plan

    facts = plan(cut.output).to_dict()
    assert facts["output_size"] == [25, 20] and facts["cropped_to"] == [23, 17]
    assert facts["output_shape"] == [2, 1, 23, 17] and facts["uncovered_pixels"] == 0


# ------------------------------------------------------------------ swt info on files of several arrays


def _multi_h5(path, tiles):
    """An HDF5 file of three arrays in groups, one of them the windows of swt unfold with their record."""
    with h5py.File(tiles) as src, h5py.File(path, "w") as f:
        f.create_dataset("images/a", data=np.ones((2, 3), np.float64), chunks=(1, 3), compression="gzip")
        f.create_dataset("b", data=np.arange(4, dtype=np.int16))
        w = f.create_dataset("tiles/w", data=src["data"][...], chunks=True, compression="lzf", shuffle=True)
        w.attrs["swt_geometry"] = src["data"].attrs["swt_geometry"]


def test_info_lists_every_array_of_an_hdf5_file(tmp_path):
    x = np.zeros((1, 21, 17), np.float32)
    np.save(tmp_path / "x.npy", x)
    assert invoke("unfold", tmp_path / "x.npy", tmp_path / "t.h5", "-k", "8", "-s", "8", "--cover", "-q").exit_code == 0
    _multi_h5(tmp_path / "m.h5", tmp_path / "t.h5")
    with h5py.File(tmp_path / "m.h5") as f:
        chunks = f["tiles/w"].chunks
    done = invoke("info", tmp_path / "m.h5")
    assert done.exit_code == 0 and done.stderr == ""
    where = tmp_path / "m.h5"
    geometry = ("unfold: kernel [8, 8], stride [8, 8], padding [0, 0], dilation [1, 1], image size [21, 17] "
                "(--cover: padded to [24, 24], swt fold crops back)")
    wide = len(f"chunks {fmt_shape(chunks)}")
    assert done.stdout.splitlines() == [
        f"{where}: hdf5, 3 arrays",
        "/b         (4,)             int16    " + "contiguous".ljust(wide) + "  none",
        "/images/a  (2, 3)           float64  " + "chunks (1, 3)".ljust(wide) + "  gzip",
        "/tiles/w   (1, 3, 3, 8, 8)  float32  " + f"chunks {fmt_shape(chunks)}" + "  lzf   " + geometry,
    ]
    facts = json.loads(invoke("info", where, "--json").stdout)
    assert facts["path"] == str(where) and facts["format"] == "hdf5"
    assert [a["name"] for a in facts["arrays"]] == ["/b", "/images/a", "/tiles/w"]
    a = facts["arrays"][1]
    assert a == {"name": "/images/a", "path": f"{where}:/images/a", "shape": [2, 3], "dtype": "float64",
                 "chunks": [1, 3], "compression": "gzip", "geometry": None}
    assert facts["arrays"][2]["geometry"]["image_size"] == [21, 17] and facts["arrays"][2]["compression"] == "lzf"
    one = json.loads(invoke("info", f"{where}:/images/a", "--json").stdout)  # naming one: its own facts, as before
    assert one["shape"] == [2, 3] and one["compression"] == "gzip"


def test_info_lists_every_array_of_a_zarr_store_with_the_same_compression_names(tmp_path):
    g = zarr.open_group(tmp_path / "m.zarr", mode="w", zarr_format=3)
    g.create_array("x", shape=(4, 5), dtype="f4", chunks=(2, 5))
    g.create_array("grp/y", shape=(3,), dtype="i8", compressors=None)
    y = g.create_array("grp/z", shape=(2, 2, 3, 3), dtype="f8", chunks=(1, 2, 3, 3),
                       compressors=zarr.codecs.GzipCodec(level=1))
    y.attrs["swt_geometry"] = json.dumps({"op": "unfold", "kernel_size": [3], "stride": [3], "padding": [0],
                                          "dilation": [1], "image_size": [8]})
    g["grp/z"][...] = 1.0
    done = invoke("info", tmp_path / "m.zarr")
    assert done.exit_code == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{tmp_path / 'm.zarr'}: zarr, 3 arrays",
        "/grp/y  (3,)          int64    chunks (3,)          none",
        "/grp/z  (2, 2, 3, 3)  float64  chunks (1, 2, 3, 3)  gzip  unfold: kernel [3], stride [3], padding [0], "
        "dilation [1], image size [8]",
        "/x      (4, 5)        float32  chunks (2, 5)        zstd",
    ]
    facts = json.loads(invoke("info", tmp_path / "m.zarr", "--json").stdout)
    assert [(a["name"], a["compression"]) for a in facts["arrays"]] == [("/grp/y", "none"), ("/grp/z", "gzip"),
                                                                         ("/x", "zstd")]
    single = json.loads(invoke("info", tmp_path / "m.zarr:/x", "--json").stdout)
    assert single["compression"] == "zstd"


# ------------------------------------------------------- geometry messages say where each value came from


def test_fold_error_names_the_recorded_values(tmp_path):
    """The issue's example: -s 8 on tiles whose kernel and image size come from the file's record."""
    np.save(tmp_path / "photo.npy", np.zeros((1, 477, 720), np.float32))
    assert invoke("unfold", tmp_path / "photo.npy", tmp_path / "tiles.h5", "-k", "64", "-s", "48", "-q").exit_code == 0
    done = run_swt("fold", "tiles.h5", "out.h5", "-s", "8", cwd=tmp_path)
    assert done.returncode == 1 and not (tmp_path / "out.h5").exists()
    assert done.stderr.decode() == (
        "Error: fold input of shape (1, 9, 14, 64, 64) with kernel 64, stride 8: output height 477 is impossible for "
        "9 windows of kernel 64, stride 8: use 128 to 135 (kernel 64 and output size 477x720 from tiles.h5's record, "
        "stride 8 from --stride)\n")


def test_note_without_record_says_stride_1_default(tmp_path):
    np.save(tmp_path / "w.npy", np.ones((2, 8, 10, 4, 4), np.float32))
    done = invoke("fold", tmp_path / "w.npy", tmp_path / "y.npy", "-k", "4")
    assert done.exit_code == 0
    assert done.stderr.splitlines()[0] == (
        "swt: no --output-size given: using 11x13, the smallest that fits 8x10 windows of kernel 4, stride 1 (sizes "
        "that fit: 11, 13); kernel 4 from --kernel, stride 1 (default)")
    given = invoke("fold", tmp_path / "w.npy", tmp_path / "z.npy", "-k", "4", "-s", "4", "-p", "1", "-o", "35,45")
    assert given.exit_code == 1
    assert given.stderr.endswith(": use 30 to 33 (kernel 4 from --kernel, stride 4 from --stride, padding 1 from "
                                 "--padding, output size 35x45 from --output-size)\n")


def test_unfold_error_names_where_the_values_came_from(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((1, 37, 29), np.float32))
    done = invoke("unfold", tmp_path / "x.npy", tmp_path / "w.npy", "-k", "40", "-p", "2")
    assert done.exit_code == 1 and done.stderr.count("\n") == 1
    assert done.stderr.endswith("image width 29 padded by 2 on each side is too small for kernel 40, stride 1, padding 2: "
                                "the window spans 40 (kernel 40 from --kernel, stride 1 (default), padding 2 from "
                                "--padding)\n")
    covered = invoke("unfold", tmp_path / "x.npy", tmp_path / "c.h5", "-k", "40", "-p", "2", "--cover", "-q")
    assert covered.exit_code == 0, covered.stderr  # --cover pads the image up to one window


def test_explain_sources():
    from swt_cli.jobs import explain_sources

    g = Geometry.from_args(64, stride=8, padding=0, dilation=1)
    sources = {"kernel_size": "record", "stride": "option", "padding": "record", "dilation": "record",
               "output_size": "record"}
    assert explain_sources(g, (477, 720), sources, "tiles.h5") == (
        "kernel 64 and output size 477x720 from tiles.h5's record, stride 8 from --stride")
    sources = {"kernel_size": "option", "stride": "default", "padding": "default", "dilation": "option"}
    assert explain_sources(Geometry.from_args((3,), dilation=(2,)), None, sources, "-") == (
        "kernel 3 from --kernel, stride 1 (default), dilation 2 from --dilation")


def test_module_classes_take_cover():
    from swt_cli import SlidingWindow, SlidingWindowTranspose

    x = np.random.default_rng(4).standard_normal((2, 3, 29, 31))
    cut = SlidingWindow(8, stride=6, cover=True, pad_value=1.5)
    w = cut(x)
    np.testing.assert_array_equal(w, unfold_loops(np.pad(x, [(0, 0), (0, 0), (0, 3), (0, 1)], constant_values=1.5),
                                                  (8, 8), (6, 6), (0, 0), (1, 1)))
    back = SlidingWindowTranspose((29, 31), 8, stride=6, reduce="mean", cover=True)
    np.testing.assert_allclose(back(w), x, rtol=1e-12)
    assert repr(cut) == "SlidingWindow(kernel_size=8, padding=0, stride=6, dilation=1, cover=True, pad_value=1.5)"
    assert repr(back).endswith("reduce='mean', cover=True)")
    with pytest.raises(SwtError, match="cannot cover an image"):
        SlidingWindow(3, stride=5, cover=True)
    with pytest.raises(SwtError, match="pads only with cover=True"):
        SlidingWindow(3, pad_value=2)


def test_cover_round_trip_on_a_dask_cluster(tmp_path):
    """--scheduler: the workers pad and crop (the transforms travel to them), the output as a plain run's."""
    x = np.random.default_rng(9).standard_normal((3, 2, 27, 19))
    np.save(tmp_path / "x.npy", x)
    cut = run_swt("unfold", tmp_path / "x.npy", tmp_path / "w.zarr", "-k", "8", "-s", "8", "--cover", "-q",
                  "--scheduler", "local:1", timeout=300)
    assert cut.returncode == 0, cut.stderr
    back = run_swt("fold", tmp_path / "w.zarr", tmp_path / "y.h5", "--reduce", "mean", "-q", "--scheduler", "local:1",
                   timeout=300)
    assert back.returncode == 0, back.stderr
    np.testing.assert_array_equal(load(tmp_path / "y.h5"), x)


def test_cover_with_the_torch_layout(tmp_path):
    """Torch's layout flattens the grid: the fold takes the covered grid from the record and crops back."""
    x = np.random.default_rng(6).standard_normal((2, 3, 21, 13))
    np.save(tmp_path / "x.npy", x)
    cut = invoke("unfold", tmp_path / "x.npy", tmp_path / "cols.h5", "-k", "4", "-s", "4", "--cover", "--layout", "torch",
                 "-q")
    assert cut.exit_code == 0, cut.stderr
    assert load(tmp_path / "cols.h5").shape == (2, 3 * 16, 6 * 4)  # the grid of 24x16
    back = invoke("fold", tmp_path / "cols.h5", tmp_path / "y.npy", "--reduce", "mean", "-q")
    assert back.exit_code == 0, back.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), x)
