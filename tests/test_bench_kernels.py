"""``asyncrl bench kernels`` end to end with tiny repeats: the output's structure, not its speed
(performance targets are checked by running the command, never by timed assertions)."""

import json

import pytest
from click.testing import CliRunner

from numba_a3c.cli.main import cli

KEYS = ("forward_s", "segment_s", "update_s", "update_3_passes_s", "segment_update_s", "update_traffic_s")


def test_bench_kernels_json():
    result = CliRunner().invoke(cli, ["bench", "kernels", "--repeats", "2", "--no-compile-times", "--no-torch",
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["repeats"] == 2 and data["t_max"] == 5
    assert data["machine"]["cores"] >= 1 and data["machine"]["numba"]
    assert set(data["networks"]) == {"mlp", "atari", "lstm", "atari-lstm"}
    assert data["networks"]["mlp"]["n_params"] == 4 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2 + 64 + 1
    assert data["networks"]["atari"]["n_params"] == 677_943
    assert data["networks"]["atari-lstm"]["n_params"] == 677_943 + 2 * 256 * 1024 + 1024   # + LSTM W, U, b
    for name, entry in data["networks"].items():
        for key in KEYS:
            assert 0 < entry[key] < 10, f"{name} {key}: {entry[key]}"
        assert entry["segment_gflops_per_s"] == pytest.approx(entry["segment_flops"] / entry["segment_s"] / 1e9)
        assert entry["update_bytes"] == 28 * entry["n_params"]
        assert entry["traffic_gb_per_s"] == pytest.approx(entry["update_bytes"] / entry["update_traffic_s"] / 1e9)
        if name in ("mlp", "atari"):
            assert entry["products_share"] == pytest.approx(entry["products_s"] / entry["segment_s"])
            by_layer = entry["by_layer"]
            assert [e["layer"] for e in by_layer["layers"]] == (
                ["conv1", "conv2", "fc1", "pi", "v"] if name == "atari" else ["fc1", "fc2", "pi", "v"])
            for e in by_layer["layers"]:
                assert all(0 < e[key] < 10 for key in ("forward_s", "backward_s", "products_s")), e
            assert by_layer["layers_sum_s"] == pytest.approx(
                sum(e["forward_s"] + e["backward_s"] for e in by_layer["layers"]))
            # the layers' products are the segment's products, shared out
            assert sum(e["products_s"] for e in by_layer["layers"]) == pytest.approx(entry["products_s"])
            assert 0 < by_layer["forward_s"] < 10 and 0 < by_layer["gradient_s"] < 10
        else:
            assert "products_s" not in entry and "by_layer" not in entry      # recurrent: no floor
    assert "cold_compile_s" not in data and "torch" not in data


def test_segment_layers_leaves_the_learner_as_training_needs_it():
    """The layer-by-layer timing runs on the worker's own Learner: afterwards its gradient
    accumulator is zero and a segment computes the same gradient as before it."""
    import numpy as np

    from numba_a3c.benchmarks.kernels import _Case, a3c_segment, segment_layers, segment_product_times
    from numba_a3c.nn.network import small_conv_spec

    case = _Case("small", small_conv_spec((2, 9, 9), 3, filters=4, hidden=8))
    L = case.L
    L.grads[:] = 0.0
    a3c_segment(L, 5)
    before = L.grads.copy()
    out = segment_layers(case, 1, segment_product_times(case.net, 1))
    assert [e["layer"] for e in out["layers"]] == [layer["name"] for layer in case.net.layers]
    assert not L.grads.any()
    a3c_segment(L, 5)
    np.testing.assert_array_equal(L.grads, before)


def test_bench_kernels_without_layers():
    result = CliRunner().invoke(cli, ["bench", "kernels", "--repeats", "1", "--no-compile-times", "--no-torch",
                                      "--no-layers", "--json"])
    assert result.exit_code == 0, result.output
    assert all("by_layer" not in e for e in json.loads(result.stdout)["networks"].values())


def test_segment_flops_counted_by_hand():
    """The Atari net's multiply-adds per row: conv1 16·4·8·8 weights at 20·20 positions, conv2
    32·16·4·4 at 9·9, fc1 2592·256, π 256·6, V 256·1; backward takes each once more for ∂W and once
    more for ∂x, except conv1's ∂x (its input is the observation)."""
    from numba_a3c.benchmarks.kernels import multiply_adds, segment_flops
    from numba_a3c.nn.network import Network, atari_spec, mlp_spec

    conv1, conv2, fc1, heads = 16 * 4 * 64 * 400, 32 * 16 * 16 * 81, 2592 * 256, 256 * 6 + 256
    atari = Network(atari_spec(6))
    assert multiply_adds(atari) == (conv1 + conv2 + fc1 + heads, conv1 + 2 * (conv2 + fc1 + heads))
    assert segment_flops(atari, 5) == 2 * 5 * (2 * conv1 + 3 * (conv2 + fc1 + heads)) == 72_634_880
    mlp = Network(mlp_spec(4, 2, (64, 64)))
    assert multiply_adds(mlp) == (4 * 64 + 64 * 64 + 64 * 3, 4 * 64 + 2 * (64 * 64 + 64 * 3))


def test_the_products_floor_counts_every_product_of_the_segment():
    """The floor ("its products alone") times exactly the products whose flops segment_flops counts,
    and is a positive time; recurrent networks have none."""
    from numba_a3c.benchmarks.kernels import segment_flops, segment_products, segment_products_list
    from numba_a3c.nn.network import Network, atari_spec, lstm_spec, mlp_spec, small_conv_spec

    for spec in (atari_spec(6), mlp_spec(4, 2, (64, 64)), small_conv_spec((2, 9, 9), 3, filters=4, hidden=8)):
        net = Network(spec)
        products = segment_products_list(net, 5)
        assert sum(2 * count * m * k * p for _, count, m, k, p in products) == segment_flops(net, 5)
    assert [what for what, *_ in segment_products_list(Network(atari_spec(6)), 5)] == [
        "conv1 forward", "conv1 dW", "conv2 forward", "conv2 dW", "conv2 dpatches", "fc1 forward", "fc1 dW",
        "fc1 dX", "pi forward", "pi dW", "pi dX", "v forward", "v dW", "v dX"]
    assert 0 < segment_products(Network(small_conv_spec((2, 9, 9), 3, filters=4, hidden=8)), 1) < 1
    assert segment_products_list(Network(lstm_spec(2, 2, (8, 8))), 5) is None


def test_bench_kernels_table():
    result = CliRunner().invoke(cli, ["bench", "kernels", "--repeats", "1", "--no-compile-times"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for label in ("machine:", "forward (1 observation)", "segment (5 steps fwd+bwd)", "update (shared RMSProp)",
                  "segment + update", "update's traffic alone", "segment, GFLOP/s", "update, GB/s",
                  "its products alone (share)", "atari's segment layer by layer", "conv1", "the layers alone sum to",
                  "mlp (4,675 params)", "atari (677,943 params)"):
        assert label in out, label
    try:
        import torch  # noqa: F401
        assert "ours/torch" in out and "a PyTorch worker" in out
    except ImportError:
        assert "PyTorch comparison skipped: torch is not installed" in out


def test_bench_kernels_rejects_bad_repeats():
    result = CliRunner().invoke(cli, ["bench", "kernels", "--repeats", "0"])
    assert result.exit_code == 2
    assert "repeats" in result.output


@pytest.mark.slow
def test_bench_kernels_compile_and_startup_times():
    result = CliRunner().invoke(cli, ["bench", "kernels", "--repeats", "1", "--no-torch", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["cold_compile_s"] > data["warm_startup_s"] > 0


def test_breakdown_helper_runs_in_its_own_thread_and_reraises():
    """``bench atari`` times its breakdown in a thread of its own (where training runs); a failure
    there reaches the caller as the same exception."""
    import threading

    from numba_a3c.benchmarks.atari import in_worker_thread

    assert in_worker_thread(lambda: threading.current_thread().name) == "breakdown"
    with pytest.raises(ZeroDivisionError):
        in_worker_thread(lambda x: 1 / x, 0)
