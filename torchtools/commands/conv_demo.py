"""conv-demo: the convolution lessons made visible, one demo at a time or all in turn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torchtools.core.command import command
from torchtools.core.config import READS, Setting
from torchtools.core.options import (DEFAULT_MAX_PIXELS, LR, MAX_PIXELS, OUTPUT, SeededSettings, TensorboardSettings,
                                     tensorboard_output)
from torchtools.core.paths import Output

if TYPE_CHECKING:
    from torchtools.core.run import Run

ARITHMETIC = "Output-size formula (arithmetic demo)"
TEXT_DEMOS = ["arithmetic", "modes", "corr2d", "edge", "learn-kernel", "pool"]
SIDE_MAX = 2**16  # arithmetic only: sizes past any picture's


@dataclass(frozen=True, kw_only=True)
class ConvDemoConfig(SeededSettings, TensorboardSettings):
    demo: list[str] | None = Setting("--demo", "-d", choices=(*TEXT_DEMOS, "image"), show_default=False,
                                     help="Which demo (repeatable). Default: every demo but image, in turn.")()
    input_size: int = Setting("--input-size", min=1, max=SIDE_MAX, help="Input side n.", panel=ARITHMETIC)(5)
    kernel: int = Setting("--kernel", min=1, max=SIDE_MAX, help="Kernel side k.", panel=ARITHMETIC)(3)
    stride: int = Setting("--stride", min=1, max=SIDE_MAX, help="Stride s.", panel=ARITHMETIC)(1)
    padding: int = Setting("--padding", min=0, max=SIDE_MAX, help="Zero padding p on each side.",
                           panel=ARITHMETIC)(0)
    dilation: int = Setting("--dilation", min=1, max=SIDE_MAX, help="Dilation d.", panel=ARITHMETIC)(1)
    steps: int = Setting("--steps", min=1, max=10**6, help="learn-kernel: gradient steps (the notes run 100).")(100)
    lr: float = LR(0.03)
    image: Path | None = Setting("--image", show_default=False, role=READS,
                                 help="image demo: a picture to convolve (read as grey). Default: a generated test "
                                      "pattern.")()
    max_side: int = Setting(
        "--max-side", min=8, max=2**15,
        help="image demo: larger pictures are scaled down to this many pixels on the long side.")(256)
    channels: int = Setting("--channels", min=1, max=64, help="image demo: channels of the random Conv2d.")(6)
    max_pixels: int = MAX_PIXELS(DEFAULT_MAX_PIXELS)
    out: Path = Setting("--out", panel=OUTPUT, help="image demo: write the PNG grids of feature maps here.")(
        Path("conv-demo"))
    no_tensorboard: bool = Setting("--no-tensorboard", panel=OUTPUT, saved=False,
                                   help="Write no TensorBoard logs.")(False)

    def writes(self) -> list[Output]:
        """Only the image demo writes: its grids into --out, and a TensorBoard run."""
        if "image" not in (self.demo or ()):
            return []
        from torchtools.lessons.convolution import GRIDS, grid_path

        return [Output(self.out, "--out", folder=True),
                *[Output(grid_path(self.out, stage), f"--out's {grid_path(Path(), stage)}") for stage in GRIDS],
                *([] if self.no_tensorboard else [tensorboard_output(self.runs_dir)])]


@command("conv-demo", ConvDemoConfig)
def conv_demo(run: Run[ConvDemoConfig]) -> None:
    """The convolution lessons: sizes, padding modes, corr2d, an edge detector, a learned kernel, pooling,
    and the feature maps of a picture."""
    from torchtools.lessons import convolution

    config, seed = run.config, run.config.seed
    selected = list(dict.fromkeys(config.demo)) if config.demo else TEXT_DEMOS
    shows = {
        "arithmetic": lambda: _show_arithmetic(convolution.arithmetic(
            config.input_size, config.kernel, config.stride, config.padding, config.dilation)),
        "modes": lambda: _show_modes(convolution.modes(config.input_size, sorted({2, 3, 4, 5, config.kernel}))),
        "corr2d": lambda: _show_corr2d(convolution.corr2d_check(seed)),
        "edge": lambda: _show_edge(convolution.edge()),
        "learn-kernel": lambda: _show_learned(convolution.learn_kernel(config.steps, config.lr, seed)),
        "pool": lambda: _show_pool(convolution.pool()),
        "image": lambda: _image_demo(config.image, config.max_side, config.channels, seed, config.out,
                                     config.runs_dir, config.no_tensorboard, config.max_pixels),
    }
    results = {name: shows[name]() for name in selected}
    learned = results.get("learn-kernel")
    run.finish(metrics={"learn_kernel_loss": learned["losses"][-1]["loss"] if learned else None},
               demos=results, kernel=learned["kernel"] if learned else None)


def _matrix(title: str, rows: list[list[float]]) -> None:
    """A matrix as a table: row index, then one column per matrix column; whole numbers print as such."""
    from torchtools.core.output import print_table

    whole = all(float(value).is_integer() for row in rows for value in row)
    cells = [[index, *(int(value) if whole else float(value) for value in row)] for index, row in enumerate(rows)]
    print_table(title, ["", *map(str, range(len(rows[0]) if rows else 0))], cells)


def _show_arithmetic(result: dict) -> dict:
    from torchtools.core.output import print_table, say

    _matrix("arithmetic: the notes' 5x5 input", result["input"])
    _matrix("arithmetic: the 3x3 kernel", result["kernel"])
    for run in result["convolutions"]:
        _matrix(f"F.conv2d(input, kernel, stride={run['stride']}, padding={run['padding']})", run["output"])
    formula = result["formula"]
    n, k, s, p, d = (formula[key] for key in ("input_size", "kernel", "stride", "padding", "dilation"))
    print_table("arithmetic: output size = floor((n + 2p - d(k-1) - 1) / s) + 1",
                ["n", "k", "s", "p", "d", "formula", "F.conv2d"],
                [[n, k, s, p, d, formula["output_size"], formula["conv2d_output_size"]]])
    say(f"({n} + 2*{p} - {d}*({k}-1) - 1) // {s} + 1 = {formula['output_size']}")
    return result


def _show_modes(result: dict) -> dict:
    from torchtools.core.output import print_table

    rows = [[entry["mode"].upper(), entry["kernel"], f"{entry['padding'][0]} / {entry['padding'][1]}",
             entry["output_size"], entry.get("pytorch_output_size", "-")] for entry in result["sizes"]]
    print_table(f"modes: input {result['input_size']}x{result['input_size']}, stride 1",
                ["mode", "kernel", "padding before / after", "output", "F.conv2d padding=mode"], rows)
    for mode, output in result["notes_outputs"].items():
        _matrix(f"modes: {mode.upper()} on the notes' 5x5 input and 3x3 kernel", output)
    return result


def _show_corr2d(result: dict) -> dict:
    from torchtools.core.output import say

    _matrix("corr2d: the notes' X", result["example"]["input"])
    _matrix("corr2d: K", result["example"]["kernel"])
    _matrix("corr2d(X, K)", result["example"]["output"])
    check = result["random"]
    _matrix("corr2d on random 6x7 input, random 3x3 kernel", check["corr2d"])
    _matrix("F.conv2d on the same", check["conv2d"])
    verdict = "equal" if check["match"] else "DIFFERENT"
    say(f"corr2d vs F.conv2d: {verdict} (largest difference {check['max_abs_difference']:.2e})")
    return result


def _show_edge(result: dict) -> dict:
    from torchtools.core.output import say

    _matrix("edge: X, ones with a zero stripe", result["input"])
    _matrix("edge: corr2d(X, [[1, -1]])", result["output"])
    say(f"edges: 1 (white to black) in column {result['falling_columns']}, "
        f"-1 (black to white) in column {result['rising_columns']}")
    _matrix("edge: corr2d(X.t(), [[1, -1]]): horizontal edges, none found", result["transposed_output"])
    _matrix("edge: corr2d(X.t(), K.t()): the transposed kernel finds them", result["transposed_with_transposed_kernel"])
    return result


def _show_learned(result: dict) -> dict:
    from torchtools.core.output import print_table, say

    print_table(f"learn-kernel: Conv2d(1, 1, (1, 2)), lr {result['lr']}, summed squared error",
                ["step", "loss"], [[entry["step"], f"{entry['loss']:.6g}"] for entry in result["losses"]])
    first, last = result["initial_kernel"], result["kernel"]
    say(f"kernel: [{first[0]:.4f}, {first[1]:.4f}] at the start, [{last[0]:.4f}, {last[1]:.4f}] "
        f"after {result['steps']} steps (the target is [1, -1])")
    return result


def _show_pool(result: dict) -> dict:
    _matrix("pool: the notes' 5x5 input", result["input"])
    for run in result["runs"]:
        rounding = "ceil" if run["ceil_mode"] else "floor"
        _matrix(f"MaxPool2d({result['kernel']}, ceil_mode={run['ceil_mode']}): {rounding}((5 - {result['kernel']}) "
                f"/ {result['stride']}) + 1 = {run['output_size']}", run["output"])
    return result


def _image_demo(path: Path | None, max_side: int, channels: int, seed: int, out: Path, runs_dir: Path,
                no_tensorboard: bool, max_pixels: int) -> dict:
    from torchtools.lessons import convolution
    from torchtools.core.tensorboard import open_tensorboard
    from torchtools.core.output import print_table, say

    picture = convolution.load_picture(path, max_side, max_pixels=max_pixels)
    maps = convolution.feature_maps(picture, channels=channels, seed=seed)
    writer = open_tensorboard(runs_dir, "conv-demo", enabled=not no_tensorboard)
    try:
        files = convolution.write_grids(maps, out, writer)
    finally:
        if writer is not None:
            writer.close()
    log_dir = writer.log_dir if writer is not None else None
    stats = [{"stage": stage, "name": name, "shape": list(plane.shape), "min": float(plane.min()),
              "max": float(plane.max()), "mean": float(plane.mean())}
             for stage, planes in maps.stages.items() for name, plane in planes]
    source = str(path) if path is not None else "generated test pattern"
    print_table(f"image: {source}, {picture.shape[1]}x{picture.shape[0]} grey",
                ["stage", "map", "size", "min", "max", "mean"],
                [[entry["stage"], entry["name"], "x".join(map(str, entry["shape"])), entry["min"], entry["max"],
                  entry["mean"]] for entry in stats])
    say(f"wrote {', '.join(map(str, files))}" + (f"; TensorBoard: {log_dir}" if log_dir else ""))
    return {"source": source, "size": [picture.shape[0], picture.shape[1]], "kernels": convolution.NAMED_KERNELS,
            "maps": stats, "files": [str(file) for file in files], "tensorboard": log_dir}
