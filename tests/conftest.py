import pytest


def _gpu_available():
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def _case_id(item) -> str:
    callspec = getattr(item, "callspec", None)
    return callspec.id if callspec is not None else ""


@pytest.hookimpl(tryfirst=True)  # before -m 'not slow' deselects: the cases marked here must count as slow
def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not _gpu_available():
        skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
    # @pytest.mark.default_cases("id", ...): a parametrized test whose listed cases (pytest's ids, as in
    # test_x[id]) stand for the whole matrix in the default run; its other cases are slow (CI runs them).
    seen: dict[object, tuple[set[str], set[str]]] = {}
    for item in items:
        marker = item.get_closest_marker("default_cases")
        if marker is None:
            continue
        keep = set(marker.args)
        ids = seen.setdefault(item.function, (keep, set()))[1]
        ids.add(_case_id(item))
        if _case_id(item) not in keep:
            item.add_marker(pytest.mark.slow)
    whole = not any("::" in arg for arg in config.args)  # node ids given: only some cases were collected
    for function, (keep, ids) in seen.items():
        if whole and keep - ids:  # a misspelt id would quietly send every case to the slow run
            raise pytest.UsageError(f"default_cases of {function.__name__} names cases it does not have: "
                                    f"{sorted(keep - ids)}; it has {sorted(ids)}")
