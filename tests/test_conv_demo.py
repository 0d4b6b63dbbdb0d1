"""conv-demo: the notes' known answers, the output-size formula, the image demo's PNGs, bad input."""

import cv2
import numpy as np
import pytest

from conftest import assert_user_error, run_torchtools

NOTES_OUTPUT = [[10, 12, 12], [18, 16, 16], [13, 9, 3]]


def demo(cli, name, *args):
    run = cli("conv-demo", "--demo", name, "--json", *args)
    assert run.exit_code == 0, run.stderr
    return run, run.summary["demos"][name]


def test_arithmetic_notes_example_and_users_formula(cli):
    run, result = demo(cli, "arithmetic", "--input-size", "32", "--kernel", "5", "--stride", "2",
                       "--padding", "2", "--dilation", "2")
    stride1, stride2, padded = result["convolutions"]
    assert (stride1["stride"], stride1["padding"], stride1["output"]) == (1, 0, NOTES_OUTPUT)
    assert (stride2["stride"], stride2["output"]) == (2, [[10, 12], [13, 3]])
    assert padded["padding"] == 1 and len(padded["output"]) == 5
    assert [row[1:4] for row in padded["output"][1:4]] == NOTES_OUTPUT  # padding keeps the valid centre
    assert padded["output"][0] == [1, 3, 4, 10, 8]
    # floor((32 + 2*2 - 2*(5-1) - 1) / 2) + 1 = 14, and F.conv2d agrees
    assert result["formula"]["output_size"] == result["formula"]["conv2d_output_size"] == 14
    assert "F.conv2d(input, kernel, stride=1, padding=0)" in run.stderr and "= 14" in run.stderr


def test_modes_valid_same_full_with_even_kernels(cli):
    _, result = demo(cli, "modes", "--input-size", "6")
    sizes = {(entry["mode"], entry["kernel"]): entry for entry in result["sizes"]}
    for kernel in (2, 3, 4, 5):
        assert sizes["valid", kernel]["output_size"] == 6 - kernel + 1
        assert sizes["same", kernel]["output_size"] == 6
        assert sizes["full", kernel]["output_size"] == 6 + kernel - 1
        assert sizes["valid", kernel]["pytorch_output_size"] == 6 - kernel + 1
        assert sizes["same", kernel]["pytorch_output_size"] == 6
    assert sizes["same", 2]["padding"] == [0, 1] and sizes["same", 4]["padding"] == [1, 2]  # one more after
    outputs = result["notes_outputs"]
    assert outputs["valid"] == NOTES_OUTPUT
    assert len(outputs["same"]) == 5 and len(outputs["full"]) == 7
    assert outputs["full"][0][0] == 0 and outputs["full"][6][6] == 1  # corners: one pixel of overlap


def test_corr2d_matches_the_notes_and_conv2d(cli):
    run, result = demo(cli, "corr2d", "--seed", "3")
    assert result["example"]["output"] == [[19, 25], [37, 43]]
    random = result["random"]
    assert random["match"] is True and random["max_abs_difference"] < 1e-5
    assert np.allclose(random["corr2d"], random["conv2d"], atol=1e-5)
    assert np.array(random["corr2d"]).shape == (4, 5)
    assert "corr2d vs F.conv2d: equal" in run.stderr


def test_edge_detector_finds_the_stripe_and_nothing_on_the_transpose(cli):
    run, result = demo(cli, "edge")
    assert result["input"][0] == [1, 1, 0, 0, 0, 0, 1, 1]
    assert result["output"] == [[0, 1, 0, 0, 0, -1, 0]] * 6
    assert result["falling_columns"] == [1] and result["rising_columns"] == [5]
    assert np.array(result["transposed_output"]).shape == (8, 5) and not np.any(result["transposed_output"])
    assert result["transposed_with_transposed_kernel"] == [[0] * 6, [1] * 6, *[[0] * 6] * 3, [-1] * 6, [0] * 6]
    assert "edges: 1 (white to black) in column [1]" in run.stderr


def test_learn_kernel_recovers_one_minus_one(cli):
    run, result = demo(cli, "learn-kernel")
    assert run.summary["kernel"] == result["kernel"]
    assert result["kernel"] == pytest.approx([1.0, -1.0], abs=0.1)
    losses = result["losses"]
    assert [entry["step"] for entry in losses] == list(range(2, 101, 2))
    assert losses[-1]["loss"] < 0.01 * losses[0]["loss"]
    assert run.summary["metrics"]["learn_kernel_loss"] == losses[-1]["loss"]
    assert "after 100 steps (the target is [1, -1])" in run.stderr

    few = cli("conv-demo", "--demo", "learn-kernel", "--steps", "5", "--json").summary
    assert [entry["step"] for entry in few["demos"]["learn-kernel"]["losses"]] == [2, 4, 5]


def test_pool_ceil_mode_off_and_on(cli):
    _, result = demo(cli, "pool")
    floor, ceil = result["runs"]
    assert (floor["ceil_mode"], floor["output_size"], floor["output"]) == (False, 1, [[2]])
    assert (ceil["ceil_mode"], ceil["output_size"], ceil["output"]) == (True, 2, [[2, 3], [5, 1]])


def test_default_runs_every_text_demo_in_turn(cli):
    run = cli("conv-demo", "--json")
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert list(summary["demos"]) == ["arithmetic", "modes", "corr2d", "edge", "learn-kernel", "pool"]
    assert summary["demos"]["arithmetic"]["convolutions"][0]["output"] == NOTES_OUTPUT
    assert summary["kernel"] == pytest.approx([1.0, -1.0], abs=0.1)
    order = [run.stderr.index(title) for title in ("arithmetic:", "modes:", "corr2d:", "edge:", "learn-kernel:",
                                                   "pool:")]
    assert order == sorted(order)
    assert "image:" not in run.stderr


def test_image_demo_writes_readable_png_grids_and_tensorboard(cli, tmp_path):
    picture = np.zeros((60, 90, 3), dtype=np.uint8)
    cv2.rectangle(picture, (20, 15), (60, 45), (255, 200, 100), -1)
    cv2.imwrite(str(tmp_path / "photo.jpg"), picture)
    run, result = demo(cli, "image", "--image", tmp_path / "photo.jpg", "--channels", "4",
                       "--out", tmp_path / "maps", "--runs-dir", tmp_path / "runs")
    assert result["size"] == [60, 90] and result["source"].endswith("photo.jpg")
    assert sorted(result["files"]) == sorted(str(tmp_path / "maps" / name)
                                             for name in ("named-kernels.png", "conv-layer.png", "max-pool.png"))
    for file in result["files"]:
        grid = cv2.imread(file, cv2.IMREAD_UNCHANGED)
        assert grid is not None and grid.ndim == 2 and min(grid.shape) > 90
    names = [entry["name"] for entry in result["maps"]]
    assert names[:6] == ["input", "sobel-x", "sobel-y", "laplacian", "blur", "sharpen"]
    assert len(names) == 6 + 4 + 4
    pooled = [entry for entry in result["maps"] if entry["stage"] == "max-pool"]
    assert all(entry["shape"] == [30, 45] for entry in pooled)
    sobel_x = result["maps"][1]
    assert sobel_x["min"] < 0 < sobel_x["max"]  # both edges of the rectangle
    assert list((tmp_path / "runs" / "conv-demo").glob("*/events.out.tfevents.*"))
    assert "wrote" in run.stderr


def test_image_demo_without_image_uses_the_test_pattern(cli, tmp_path):
    _, result = demo(cli, "image", "--no-tensorboard", "--out", tmp_path / "out")
    assert result["source"] == "generated test pattern" and result["tensorboard"] is None
    assert len(list((tmp_path / "out").glob("*.png"))) == 3
    assert not (tmp_path / "runs").exists()


def test_bad_input_is_one_line_exit_2(cli, tmp_path):
    assert_user_error(cli("conv-demo", "--demo", "image", "--image", tmp_path / "missing.png"), "not found")
    (tmp_path / "notes.png").write_text("not a picture")
    assert_user_error(cli("conv-demo", "--demo", "image", "--image", tmp_path / "notes.png"), "not an image")
    cv2.imwrite(str(tmp_path / "dot.png"), np.zeros((1, 1), dtype=np.uint8))
    assert_user_error(cli("conv-demo", "--demo", "image", "--image", tmp_path / "dot.png"), "at least 2x2")
    assert_user_error(cli("conv-demo", "--demo", "arithmetic", "--input-size", "3", "--kernel", "5"), "spans 5")


def test_real_process_prints_tables_on_stderr_and_json_on_stdout(tmp_path):
    run = run_torchtools("conv-demo", "--demo", "edge", "--demo", "pool", "--json", cwd=tmp_path)
    assert run.exit_code == 0, run.stderr
    assert list(run.summary["demos"]) == ["edge", "pool"] and run.summary["kernel"] is None
    assert len(run.stdout.strip().splitlines()) == 1
    assert "MaxPool2d(3, ceil_mode=True)" in run.stderr
