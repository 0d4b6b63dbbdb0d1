"""The options of a folder of pictures labelled by a CSV (transfer and cifar; read by data/labels_csv.py).

Declared apart from data/labels_csv.py, which imports OpenCV and NumPy: `torchtools --help` builds these options
and must stay light.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torchtools.core.config import READS, Config, Setting
from torchtools.core.options import DATA_PANEL


@dataclass(frozen=True, kw_only=True)
class LabelsCsvSettings(Config):
    """transfer and cifar: the labels of a folder of pictures from a CSV, as Kaggle ships them (data.labels_csv)."""

    labels: Path | None = Setting(
        "--labels", saved=False, show_default=False, metavar="CSV", role=READS,
        help="Label the pictures under --data (default: the CSV's folder) from a CSV such as Kaggle's train.csv: "
             "an image column (relative paths, extension optional) and a label column.")()
    image_column: str | None = Setting("--image-column", panel=DATA_PANEL, saved=False, show_default=False,
                                       metavar="NAME",
                                       help="The --labels column of picture paths. Default: found by name (image, "
                                            "id, file, ...).")()
    label_column: str | None = Setting("--label-column", panel=DATA_PANEL, saved=False, show_default=False,
                                       metavar="NAME",
                                       help="The --labels column of labels. Default: found by name (label, class, "
                                            "...).")()
    held_out_column: str | None = Setting(
        "--held-out-column", panel=DATA_PANEL, saved=False, show_default=False, metavar="NAME",
        help="A --labels column marking held-out rows (true/false, 1/0, train/val). Default: a seeded split.")()
    val_labels: Path | None = Setting("--val-labels", saved=False, show_default=False, metavar="CSV", role=READS,
                                      help="A second CSV laid out as --labels: the held-out pictures.")()
