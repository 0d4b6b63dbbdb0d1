"""Downloads that are all or nothing: fetched into a temporary folder beside the destination, then moved in.

The temporary folder sits in the destination's parent, on the same filesystem, so each finished file
lands with one atomic rename (os.replace); a reader never sees half a file. On any failure the temporary
folder and every folder this download created are removed: the data root is left as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from torchtools.core.errors import UserError, first_line


# What to do when the files are elsewhere: every missing-data message ends with it.
ELSEWHERE = "or pass --data DIR (or set $TORCHTOOLS_DATA) to the data root that holds them"


def fetch_files(folder: Path, files: list[str], fetch: Callable[[Path], Path]) -> None:
    """Put the missing `files` into `folder`: `fetch(temp)` downloads into `temp` and returns the folder
    there that holds them (for an archive, where it unpacked). Failures are a UserError; nothing is left."""
    folder = Path(folder)
    created = _first_missing(folder)
    temp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.download-", dir=folder.parent))
        source = fetch(temp)
        absent = [name for name in files if not (source / name).is_file()]
        if absent:
            raise UserError(f"the download did not contain {', '.join(absent)}")
        folder.mkdir(exist_ok=True)
        for name in files:
            if not (folder / name).is_file():
                os.replace(source / name, folder / name)
    except Exception as error:
        _remove(created)
        reason = str(error) if isinstance(error, UserError) else first_line(error)
        raise UserError(f"dataset files not found in {folder} and the download failed ({reason}): "
                        f"put {', '.join(files)} there, {ELSEWHERE}") from None
    except BaseException:  # Ctrl-C mid-download: still leave nothing behind
        _remove(created)
        raise
    finally:
        _remove(temp)


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder on the way to `folder` that does not exist yet (None when it does)."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing = path
    return missing


def _remove(path: Path | None) -> None:
    if path is not None and path.exists():
        shutil.rmtree(path, ignore_errors=True)




def mirror_fetcher(mirrors: list[str], resources: list[tuple[str, str]]) -> Callable[[Path], Path]:
    """Download each (file name, md5) from the first mirror that has it, as torchvision's MNIST classes do."""
    def fetch(temp: Path) -> Path:
        from torchvision.datasets import utils

        for name, md5 in resources:
            errors = []
            for mirror in mirrors:
                try:
                    utils.download_url(f"{mirror}{name}", root=str(temp), filename=name, md5=md5)
                    break
                except Exception as error:  # urllib, socket, SSL and md5 failures: try the next mirror
                    (temp / name).unlink(missing_ok=True)
                    errors.append(f"{mirror}: {first_line(error)}")
            else:
                raise OSError(f"{name}: " + "; ".join(errors))
        return temp
    return fetch


def archive_fetcher(url: str, filename: str, md5: str, folder_inside: str) -> Callable[[Path], Path]:
    """Download and unpack an archive (checked against its md5); its files are in `folder_inside`."""
    def fetch(temp: Path) -> Path:
        from torchvision.datasets import utils

        try:
            utils.download_and_extract_archive(url, download_root=str(temp), filename=filename, md5=md5)
        except Exception as error:  # urllib, socket, SSL, md5 and archive failures: named with the address
            raise OSError(f"{url}: {first_line(error)}") from None
        return temp / folder_inside
    return fetch
