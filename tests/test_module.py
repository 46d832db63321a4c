"""The module classes follow MegEngine's Module protocol."""

import numpy as np
import pytest

from swt_cli import SlidingWindow, SlidingWindowTranspose, SwtError, sliding_window_transpose


@pytest.fixture
def windows():
    return np.random.default_rng(1).standard_normal((2, 3, 31, 31, 3, 3)).astype(np.float32)


def test_forward_and_call_agree(windows):
    m = SlidingWindowTranspose(64, 3, stride=2)
    np.testing.assert_array_equal(m(windows), m.forward(windows))
    np.testing.assert_array_equal(m(windows), sliding_window_transpose(windows, 64, 3, stride=2))


def test_pre_hook_may_replace_inputs_and_hook_the_output(windows):
    m = SlidingWindowTranspose(64, 3, stride=2)
    seen = []
    pre = m.register_forward_pre_hook(lambda mod, inputs: (inputs[0] * 2,))
    post = m.register_forward_hook(lambda mod, inputs, out: seen.append(inputs[0].sum()) or out + 1)
    got = m(windows)
    np.testing.assert_allclose(got, 2 * sliding_window_transpose(windows, 64, 3, stride=2) + 1, rtol=1e-6)
    assert seen[0] == pytest.approx(2 * windows.sum(), rel=1e-5)
    pre.remove()
    post.remove()
    np.testing.assert_array_equal(m(windows), m.forward(windows))


def test_pre_hook_returning_a_bare_value_and_none(windows):
    m = SlidingWindow(3, stride=2)
    m.register_forward_pre_hook(lambda mod, inputs: None)
    m.register_forward_pre_hook(lambda mod, inputs: inputs[0][:1])
    assert m(np.ones((4, 1, 9, 9))).shape == (1, 1, 4, 4, 3, 3)


def test_training_flags_and_traversal():
    m = SlidingWindowTranspose(64, 3, stride=2)
    assert m.training
    m.eval()
    assert not m.training
    m.train()
    assert m.training
    visited = []
    m.apply(visited.append)
    assert visited == [m]
    assert list(m.modules()) == [m] and list(m.named_modules()) == [("", m)]
    assert list(m.children()) == [] and list(m.named_children()) == []
    for name in ("parameters", "named_parameters", "buffers", "named_buffers", "tensors", "named_tensors"):
        assert list(getattr(m, name)()) == []


def test_state_dict_is_empty_and_strict_loading_refuses_keys():
    m = SlidingWindow(3)
    assert dict(m.state_dict()) == {}
    m.load_state_dict({})
    m.load_state_dict({"weight": 1}, strict=False)
    with pytest.raises(SwtError, match=r"SlidingWindow has no parameters, but the state dict holds weight \(pass strict=False"):
        m.load_state_dict({"weight": 1})


def test_quantize_replace_param_and_zero_grad():
    m = SlidingWindowTranspose(8, 2, stride=2)
    assert m.disable_quantize() is m and m.quantize_disabled
    m.disable_quantize(False)
    assert not m.quantize_disabled
    assert m.replace_param({0: object()}, 0) == 0
    assert m.zero_grad() is None


def test_repr_shows_the_geometry():
    assert repr(SlidingWindowTranspose((29, 23), (5, 4), padding=1, stride=2, dilation=1)) == (
        "SlidingWindowTranspose(output_size=(29, 23), kernel_size=(5, 4), padding=1, stride=2, dilation=1)"
    )
    assert repr(SlidingWindow(3, stride=2)) == "SlidingWindow(kernel_size=3, padding=0, stride=2, dilation=1)"


def test_repr_names_only_the_constructors_arguments_and_rebuilds_the_module():
    """The repr is a call of the constructor: every name in it is a parameter, and evaluating it gives the same module."""
    import inspect
    import re

    for cls, module in (
        (SlidingWindowTranspose, SlidingWindowTranspose((29, 23), (5, 4), padding=1, stride=2, reduce="mean", fill=-1)),
        (SlidingWindowTranspose, SlidingWindowTranspose(7, 3, weight="hann")),
        (SlidingWindow, SlidingWindow((3, 2), padding=(1, 0), stride=2, dilation=(1, 2))),
    ):
        text = repr(module)
        names = re.findall(r"(\w+)=", text)
        assert names and set(names) <= set(inspect.signature(cls).parameters), text
        rebuilt = eval(text, {cls.__name__: cls})
        assert repr(rebuilt) == text
        windows = np.random.default_rng(2).standard_normal((1, 2, 5, 5, 3, 3))  # a 5x5 grid folds to 7x7
        if cls is SlidingWindowTranspose and module.kernel_size == 3:
            np.testing.assert_array_equal(rebuilt(windows), module(windows))


def test_bad_geometry_fails_at_construction():
    with pytest.raises(SwtError, match="stride must be >= 1, got 0"):
        SlidingWindowTranspose(8, 3, stride=0)
    with pytest.raises(SwtError, match="kernel_size must be >= 1"):
        SlidingWindow(0)
