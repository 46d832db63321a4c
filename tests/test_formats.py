"""One contract for every format's reader and writer, run against .npy, HDF5 and Zarr (and the stream)."""

import io
import os

import numpy as np
import pytest

from swt_cli import SwtError
from swt_cli.formats import TEMP_MARK, Location, create_writer, open_reader
from swt_cli.formats.stream import StdinReader, StdoutWriter


class FormatContract:
    """Subclasses set ``ext``; every test here runs for each format."""

    ext = None

    def path(self, tmp_path, name="a"):
        return str(tmp_path / f"{name}{self.ext}")

    def write(self, spec, array, chunks=None, attrs=None, overwrite=False, rows=None):
        writer = create_writer(spec, array.shape, array.dtype, attrs=attrs, chunks=chunks, overwrite=overwrite)
        rows = rows or max(1, len(array))
        for start in range(0, len(array), rows):
            writer.write((slice(start, start + rows),), array[start:start + rows])
        writer.commit()

    @pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "int8", "uint16", "int64", "complex64"])
    def test_round_trip_in_blocks(self, tmp_path, dtype):
        rng = np.random.default_rng(2)
        array = (rng.standard_normal((7, 3, 5, 4)) * 50).astype(dtype)
        spec = self.path(tmp_path)
        self.write(spec, array, chunks=(2, 3, 5, 4), rows=2)
        with open_reader(spec) as reader:
            assert reader.shape == array.shape and reader.dtype == array.dtype
            np.testing.assert_array_equal(reader.read((slice(0, 7),)), array)
            np.testing.assert_array_equal(reader.read((slice(3, 5),)), array[3:5])
            np.testing.assert_array_equal(reader.read((slice(4, 5), slice(1, 3))), array[4:5, 1:3])

    #: Whether the reader fills a buffer it is given (Zarr decodes into its own and ignores it).
    reads_into_buffers = True

    def test_read_into_a_buffer_gives_the_same_blocks(self, tmp_path):
        rng = np.random.default_rng()
        array = rng.standard_normal((9, 2, 3, 5)).astype(np.float32)
        spec = self.path(tmp_path)
        self.write(spec, array, chunks=(2, 2, 3, 5), rows=4)
        flat = np.full(4 * 2 * 3 * 5, np.nan, np.float32)  # one buffer reused for every block, as the pipeline does
        with open_reader(spec) as reader:
            for index, expected in [((slice(0, 4),), array[0:4]), ((slice(4, 8),), array[4:8]),
                                    ((slice(8, 9),), array[8:9]), ((slice(5, 6), slice(1, 2)), array[5:6, 1:2])]:
                out = flat[: expected.size].reshape(expected.shape)
                block = reader.read(index, out)
                np.testing.assert_array_equal(block, expected)
                assert (block is out) == self.reads_into_buffers

    def test_attributes_survive(self, tmp_path):
        spec = self.path(tmp_path)
        self.write(spec, np.ones((2, 2), np.float32), attrs={"swt_geometry": '{"op": "unfold"}', "swt_version": "9"})
        with open_reader(spec) as reader:
            if self.ext != ".npy":
                assert reader.attrs["swt_geometry"] == '{"op": "unfold"}' and reader.attrs["swt_version"] == "9"
            assert reader.describe()["shape"] == [2, 2]

    def test_nothing_under_the_name_until_commit_and_abort_cleans_up(self, tmp_path):
        spec = self.path(tmp_path)
        writer = create_writer(spec, (4, 3), np.float32)
        writer.write((slice(0, 2),), np.ones((2, 3), np.float32))
        assert not os.path.exists(spec)
        assert any(TEMP_MARK in name for name in os.listdir(tmp_path))
        writer.abort()
        assert os.listdir(tmp_path) == []

    def test_existing_output_is_refused_without_overwrite_and_kept(self, tmp_path):
        spec = self.path(tmp_path)
        self.write(spec, np.full((2, 2), 7, np.int16))
        with pytest.raises(SwtError, match=f"{spec} exists: pass --overwrite to replace it"):
            create_writer(spec, (2, 2), np.int16)
        self.write(spec, np.full((3, 2), 9, np.int16), overwrite=True)
        with open_reader(spec) as reader:
            np.testing.assert_array_equal(reader.read((slice(0, 3),)), np.full((3, 2), 9))
        assert sorted(os.listdir(tmp_path)) == [os.path.basename(spec)]

    def test_missing_file(self, tmp_path):
        with pytest.raises(SwtError, match=f"no such file: {self.path(tmp_path, 'missing')}"):
            open_reader(self.path(tmp_path, "missing"))

    def test_empty_leading_axis(self, tmp_path):
        spec = self.path(tmp_path)
        writer = create_writer(spec, (0, 3, 4), np.float32)
        writer.commit()
        with open_reader(spec) as reader:
            assert reader.shape == (0, 3, 4)


class TestNpy(FormatContract):
    ext = ".npy"

    def test_reads_files_numpy_wrote_in_both_orders(self, tmp_path):
        array = np.random.default_rng(0).standard_normal((5, 4, 3))
        np.save(tmp_path / "c.npy", array)
        np.save(tmp_path / "f.npy", np.asfortranarray(array))
        for name in ("c.npy", "f.npy"):
            with open_reader(str(tmp_path / name)) as reader:
                np.testing.assert_array_equal(reader.read((slice(1, 4),)), array[1:4])

    def test_numpy_reads_what_swt_wrote(self, tmp_path):
        array = np.arange(24, dtype=np.float32).reshape(4, 6)
        self.write(self.path(tmp_path), array, rows=3)
        np.testing.assert_array_equal(np.load(self.path(tmp_path)), array)


class TestHdf5(FormatContract):
    ext = ".h5"

    def test_named_arrays_and_choice_among_several(self, tmp_path):
        import h5py

        path = str(tmp_path / "many.h5")
        with h5py.File(path, "w") as f:
            f["a"] = np.ones((2, 2))
            f.create_group("g")["b"] = np.zeros((3, 3))
        with pytest.raises(SwtError, match=rf"{path} holds 2 arrays \(/a, /g/b\): name one as {path}:/a"):
            open_reader(path)
        with open_reader(f"{path}:/g/b") as reader:
            assert reader.shape == (3, 3)
        with pytest.raises(SwtError, match=rf"{path}:/g is a group, not an array"):
            open_reader(f"{path}:/g")
        with pytest.raises(SwtError, match=rf"{path} has no array /nope \(/a, /g/b\)"):
            open_reader(f"{path}:/nope")

    def test_writes_into_a_named_dataset_with_chunks_and_compression(self, tmp_path):
        import h5py

        spec = str(tmp_path / "out.h5") + ":/group/images"
        writer = create_writer(spec, (8, 4), np.float32, chunks=(2, 4), compression="gzip")
        writer.write((slice(0, 8),), np.arange(32, dtype=np.float32).reshape(8, 4))
        writer.commit()
        with h5py.File(tmp_path / "out.h5") as f:
            ds = f["group/images"]
            assert ds.chunks == (2, 4) and ds.compression == "gzip"
            np.testing.assert_array_equal(ds[...], np.arange(32).reshape(8, 4))


def _h5_with(path, array, **options):
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=array, **options)
    return str(path)


@pytest.mark.parametrize("options, raw", [
    ({}, True),                                                  # contiguous
    ({"chunks": (3, 4, 5)}, True),                               # chunks of whole rows, the last one partial
    ({"chunks": (3, 2, 5)}, False),                              # chunks cut the rows
    ({"chunks": (3, 4, 5), "compression": "gzip"}, False),
    ({"chunks": (3, 4, 5), "shuffle": True}, False),
    ({"chunks": (3, 4, 5), "fletcher32": True}, False),
    ({"dtype": ">f4"}, False),                                   # not this machine's byte order
])
def test_hdf5_blocks_read_as_plain_bytes_where_the_file_allows(tmp_path, options, raw):
    from swt_cli.formats.hdf5 import raw_extents

    array = np.random.default_rng().standard_normal((10, 4, 5)).astype(np.float32)
    spec = _h5_with(tmp_path / "a.h5", array, **options)
    import h5py

    with h5py.File(spec) as f:
        assert (raw_extents(f["x"]) is not None) == raw
    flat = np.full(array.size, np.nan, np.float32)
    with open_reader(spec) as reader:
        for index in [(slice(0, 10),), (slice(2, 7),), (slice(9, 10),), (slice(4, 5), slice(1, 3)), (slice(5, 6),)]:
            want = array[index]
            out = flat[: want.size].reshape(want.shape)
            np.testing.assert_array_equal(reader.read(index, out), want)
        assert (reader._fd is not None) == raw


def _h5_low_level(path, make_type, values, chunks=None):
    """A dataset of a stored type that h5py shows as an ordinary NumPy dtype but HDF5 converts on reading."""
    import h5py

    with h5py.File(path, "w") as f:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        if chunks:
            dcpl.set_chunk(chunks)
        h5py.h5d.create(f.id, b"x", make_type(), h5py.h5s.create_simple(values.shape), dcpl=dcpl)
        f["x"][...] = values
    return str(path)


def _int32_in_16_bits():
    import h5py

    t = h5py.h5t.STD_I32LE.copy()
    t.set_precision(16)
    t.set_offset(8)
    return t


def _complex_imaginary_first():
    import h5py

    t = h5py.h5t.create(h5py.h5t.COMPOUND, 8)
    t.insert(b"r", 4, h5py.h5t.IEEE_F32LE)
    t.insert(b"i", 0, h5py.h5t.IEEE_F32LE)
    return t


@pytest.mark.parametrize("make_type, values, chunks", [
    (_int32_in_16_bits, np.arange(60, dtype=np.int32).reshape(10, 6) * 3, None),
    (_int32_in_16_bits, np.arange(60, dtype=np.int32).reshape(10, 6) * 3, (2, 6)),
    (_complex_imaginary_first, (np.arange(60) - 1j * np.arange(60)).astype(np.complex64).reshape(10, 6), None),
], ids=["int32-precision-16-contiguous", "int32-precision-16-chunked", "complex-imaginary-first"])
def test_hdf5_stored_types_that_need_converting_go_through_hdf5(tmp_path, make_type, values, chunks):
    from swt_cli.formats.hdf5 import raw_extents

    spec = _h5_low_level(tmp_path / "a.h5", make_type, values, chunks)
    with open_reader(spec) as reader:
        assert raw_extents(reader._dataset) is None
        np.testing.assert_array_equal(reader.read((slice(0, 10),), np.empty((10, 6), reader.dtype)), values)


def test_hdf5_reads_the_file_it_opened_even_if_the_path_is_replaced(tmp_path):
    array = np.arange(60, dtype=np.float32).reshape(10, 6)
    spec = _h5_with(tmp_path / "a.h5", array)
    with open_reader(spec) as reader:  # swt opens the input and checks it ...
        _h5_with(tmp_path / "b.h5", -array)
        os.replace(tmp_path / "b.h5", tmp_path / "a.h5")  # ... while another job commits a new version
        np.testing.assert_array_equal(reader.read((slice(0, 10),), np.empty((10, 6), np.float32)), array)
        assert reader._fd is not None


@pytest.mark.parametrize("ext", [".npy", ".h5"])
def test_a_buffer_that_does_not_fit_is_not_read_into(tmp_path, ext):
    array = np.random.default_rng().standard_normal((6, 10)).astype(np.float32)
    spec = str(tmp_path / f"a{ext}")
    np.save(spec, array) if ext == ".npy" else _h5_with(spec, array)
    with open_reader(spec) as reader:
        for out in [np.zeros((10, 6), np.float32).T, np.zeros((6, 10), np.float64), np.zeros((5, 10), np.float32)]:
            got = reader.read((slice(0, 6),), out)
            np.testing.assert_array_equal(got, array)
            assert got is not out and not out.any()
        # an index that is not one run of the file's bytes still reads right (through HDF5 for .h5)
        out = np.empty((1, 3), np.float32)
        np.testing.assert_array_equal(reader.read((slice(2, 3), slice(4, 7)), out), array[2:3, 4:7])


@pytest.mark.slow
def test_a_block_of_more_than_2_gib_is_read_whole(tmp_path):
    """One preadv returns at most about 2 GiB on Linux; a larger block takes several."""
    from numpy.lib.format import open_memmap

    n = (1 << 29) + 2048  # float32: 2 GiB and 8 KiB
    for ext in (".npy", ".h5"):
        spec = str(tmp_path / f"big{ext}")
        if ext == ".npy":
            big = open_memmap(spec, mode="w+", dtype=np.float32, shape=(1, n))  # sparse: zeros cost no disk
            big[0, -5:] = np.arange(1, 6)
            big.flush()
            del big
        else:
            import h5py

            with h5py.File(spec, "w") as f:
                f.create_dataset("x", shape=(1, n), dtype="f4")[0, -5:] = np.arange(1, 6)
        with open_reader(spec) as reader:
            got = reader.read((slice(0, 1),), np.empty((1, n), np.float32))
            np.testing.assert_array_equal(got[0, -5:], np.arange(1, 6))
            assert not got[0, :-5].any()
            del got
        os.remove(spec)


def test_hdf5_unwritten_chunks_read_as_the_fill_value(tmp_path):
    import h5py

    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("x", shape=(8, 3), dtype="f4", chunks=(2, 3), fillvalue=7.5)
        d[0:2] = 1.0
    with open_reader(str(path)) as reader:
        got = reader.read((slice(0, 8),), np.empty((8, 3), np.float32))
    np.testing.assert_array_equal(got[:2], 1.0)
    np.testing.assert_array_equal(got[2:], 7.5)


def test_hdf5_truncated_raw_data_is_a_damaged_file(tmp_path):
    array = np.random.default_rng().standard_normal((64, 32, 32)).astype(np.float32)
    path = tmp_path / "a.h5"
    _h5_with(path, array, chunks=(8, 32, 32))
    with open_reader(str(path)) as reader:
        reader.read((slice(0, 8),), np.empty((8, 32, 32), np.float32))  # looks the chunks up
        os.truncate(path, os.path.getsize(path) - 40000)
        with pytest.raises(SwtError, match=r"/x ends early in the file \(got \d+ of 32768 bytes\): the file is damaged or was truncated"):
            reader.read((slice(56, 64),), np.empty((8, 32, 32), np.float32))


class TestZarr(FormatContract):
    reads_into_buffers = False
    ext = ".zarr"

    def test_named_array_in_a_group(self, tmp_path):
        import zarr

        spec = str(tmp_path / "t.zarr") + ":/g/windows"
        writer = create_writer(spec, (4, 2), np.float64, chunks=(2, 2))
        writer.write((slice(0, 4),), np.arange(8.0).reshape(4, 2))
        writer.commit()
        arr = zarr.open_group(str(tmp_path / "t.zarr"), mode="r")["g/windows"]
        assert arr.chunks == (2, 2)
        np.testing.assert_array_equal(arr[...], np.arange(8.0).reshape(4, 2))
        with open_reader(str(tmp_path / "t.zarr")) as reader:  # the only array: no name needed
            assert reader.shape == (4, 2)


def test_locations_parse_names_and_reject_unknown_formats():
    assert Location.parse("a/b.HDF5:/x/y") == Location("a/b.HDF5", "hdf5", "x/y")
    assert Location.parse("-") == Location("-", "stream")
    assert Location.parse("t.zarr") == Location("t.zarr", "zarr")
    with pytest.raises(SwtError, match="cannot tell the format of 'a.tif'"):
        Location.parse("a.tif")


def test_stream_round_trip_through_bytes():
    array = np.random.default_rng(1).standard_normal((5, 3, 2)).astype(np.float32)
    sink = io.BytesIO()
    writer = StdoutWriter(Location("-", "stream"), array.shape, array.dtype, stream=sink)
    writer.write((slice(0, 2),), array[:2])
    writer.write((slice(2, 5),), array[2:])
    writer.commit()
    np.testing.assert_array_equal(np.load(io.BytesIO(sink.getvalue())), array)
    reader = StdinReader(Location("-", "stream"), stream=io.BytesIO(sink.getvalue()))
    np.testing.assert_array_equal(reader.read((slice(0, 3),)), array[:3])
    buffer = np.empty((2, 3, 2), np.float32)
    assert reader.read((slice(3, 5),), buffer) is buffer
    np.testing.assert_array_equal(buffer, array[3:])


def test_truncated_stream_is_an_error():
    buf = io.BytesIO()
    np.save(buf, np.ones((4, 4), np.float32))
    reader = StdinReader(Location("-", "stream"), stream=io.BytesIO(buf.getvalue()[:-10]))
    with pytest.raises(SwtError, match=r"stdin ended after 54 of 64 bytes of data: the stream of \(4, 4\) float32 is truncated"):
        reader.read((slice(0, 4),))
