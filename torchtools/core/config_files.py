"""A run in one file: `--config FILE` (YAML, TOML or JSON, by suffix) in, the resolved config as YAML out.

A file's keys are the settings' names as the options spell them (`batch-size` or `batch_size`), found from
`Config.settings()`, so every setting of a command is a key. Its values pass the checks the command line's
pass (`Config._checked`, the loop `Config.build` runs), wrapped to name the file, the key and its line; the
run then builds its config from them like from typed options (`core/command.py`). The options typed on the
command line win over the file, whose values count as typed: they beat the recipe, and a resumed run
compares them with the checkpoint's. `dump` writes the YAML that --print-config prints (one JSON line with
--json), --report's config.yaml and the TensorBoard run's hold; read back with --config it gives the same run.
Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

from torchtools.core.config import Config, _plain
from torchtools.core.errors import UserError, not_a_file
from torchtools.core.options import TrainingSettings

MAX_BYTES = 1 << 20  # a settings file is a few hundred bytes: a larger one is not one (and is not read whole)
META = ("config", "print_config")  # the options about the file itself, not keys in it
SUFFIXES = (".yaml", ".yml", ".toml", ".json")


def merged(command: str, config_type: type[Config], values: dict[str, Any],
           typed: frozenset[str]) -> tuple[dict[str, Any], frozenset[str]]:
    """The typed values with the --config file's beneath them, and the names of both (the file's count as typed)."""
    path = Path(values["config"])
    spellings = _spellings(config_type)
    given: dict[str, Any] = {}
    where: dict[str, str] = {}
    for key, value, line in _read(path):
        place = f"{path}, line {line}" if line else f"{path}"
        name = spellings.get(key) if isinstance(key, str) else None
        if name is None:
            close = difflib.get_close_matches(str(key), [spelling for spelling in spellings if "_" not in spelling],
                                              n=1)
            hint = f"did you mean {close[0]}?" if close else f"the keys are the options of torchtools {command} --help"
            raise UserError(f"{place}: unknown key {key!r}; {hint}")
        if name in given:
            raise UserError(f"{place}: {key} is given twice (also as {where[name]}); keep one")
        given[name], where[name] = value, f"{key}, line {line}" if line else key
    checked = config_type._checked(given, lambda name, error: UserError(f"{path} ({where[name]}): {error}"),
                                   typed=True)
    return {**values, **{name: value for name, value in checked.items() if name not in typed}}, typed | set(checked)


def dump(command: str, config: Config, *, as_json: bool = False) -> str:
    """The config as --config reads it: every setting (recipe values filled, defaults applied), as YAML; or
    (`as_json`, --print-config --json, whose last stdout line must be one JSON object) as one JSON line, which
    --config reads back from a .json file."""
    import yaml

    values = {_key(name, setting.flag): _plain(_spelt(vars(config)[name], setting, config))
              for name, (setting, _) in config.settings().items() if name not in META}
    if as_json:
        return json.dumps(values, ensure_ascii=False) + "\n"
    header = f"# torchtools {command} --config FILE: these settings; an option typed beside it wins.\n"
    return header + yaml.safe_dump(values, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _spelt(value: Any, setting, config: Config) -> Any:
    """A settled None that a word chose (--weights none, once the run trains) as that word, so the file asks for it."""
    chosen = isinstance(config, TrainingSettings) and config.checkpoint is None
    return setting.none_word if value is None and setting.none_word is not None and chosen else value


def replayed(config: Config) -> Config:
    """The config of the run that trained a --checkpoint (for --print-config): that run loaded none."""
    trained_by_checkpoint = isinstance(config, TrainingSettings) and config.checkpoint is not None
    return dataclasses.replace(config, checkpoint=None) if trained_by_checkpoint else config


def _key(name: str, flag: str) -> str:
    """How a file names a setting: its option without the dashes (batch-size); a positional argument, its name."""
    return flag.lstrip("-") if flag.startswith("-") else name


def _spellings(config_type: type[Config]) -> dict[str, str]:
    """Every key a file may use for each setting -> the setting's name: batch-size, batch_size, an alias (csv)."""
    spellings = {}
    for name, (setting, _) in config_type.settings().items():
        if name in META:
            continue
        for key in (_key(name, setting.flag), *(alias.lstrip("-") for alias in setting.aliases)):
            spellings[key] = spellings[key.replace("-", "_")] = name
        spellings[name] = name
    return spellings


def _read(path: Path) -> list[tuple[Any, Any, int | None]]:
    """(key, value, line) of each top-level entry, in file order; any other content is one UserError."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(f"--config {path}: the name must end in .yaml, .yml, .toml or .json (its format)")
    try:  # opened without waiting (a FIFO would block), then judged by what was opened (a link: its file)
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise not_a_file(path, "--config") from None
    except OSError as error:
        raise UserError(f"--config {path} cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):  # a folder, a FIFO or a device: as every input
        os.close(descriptor)
        raise not_a_file(path, "--config")
    with os.fdopen(descriptor, "rb") as file:
        try:
            data = file.read(MAX_BYTES + 1)
        except OSError as error:
            raise UserError(f"--config {path} cannot be read ({error.strerror})") from None
    if len(data) > MAX_BYTES:
        raise UserError(f"--config {path} is over {MAX_BYTES // 2**20} MiB: not a settings file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(f"--config {path}: byte {error.start + 1} is not UTF-8 text") from None
    parse = _yaml if suffix in (".yaml", ".yml") else _toml if suffix == ".toml" else _json
    try:
        return parse(path, text)
    except RecursionError:  # [[[[...]]]]: the parsers recurse per level
        raise UserError(f"--config {path}: nested too deeply to be a settings file") from None


def _yaml(path: Path, text: str) -> list[tuple[Any, Any, int | None]]:
    """YAML by its composed nodes, which carry each key's line; every key is kept, so a repeated one is seen."""
    import yaml

    loader = _loader()(text)
    try:
        node = loader.get_single_node()
        if node is None:  # an empty file: no settings
            return []
        if not isinstance(node, yaml.MappingNode):
            raise UserError(f"{path}: holds a {node.id}, not key: value lines")
        return [(loader.construct_object(key, deep=True), loader.construct_object(value, deep=True),
                 key.start_mark.line + 1) for key, value in node.value]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        place = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserError(f"{path}{place}: not valid YAML ({problem})") from None
    finally:
        loader.dispose()


def _toml(path: Path, text: str) -> list[tuple[Any, Any, int | None]]:
    """TOML by the standard library, which gives no positions: a top-level key's line is found in the text
    (every top-level key comes before the first [table])."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML ({error})") from None
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        found = _TOML_KEY.match(line)
        if found:
            lines.setdefault(next(group for group in found.groups() if group is not None), number)
    return [(key, value, lines.get(key)) for key, value in data.items()]


def _json(path: Path, text: str) -> list[tuple[Any, Any, int | None]]:
    """JSON by the standard decoder: checked whole first (its errors have positions), then its top-level
    object walked with the decoder, which says where each key starts."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}, line {error.lineno}, column {error.colno}: not valid JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: holds {type(data).__name__}, not one object of \"key\": value pairs")
    decoder, pairs = json.JSONDecoder(), []
    position = _JSON_SPACE.match(text).end() + 1  # past the "{"
    while True:
        position = _JSON_SPACE.match(text, position).end()
        if text[position] == "}":
            return pairs
        line = text.count("\n", 0, position) + 1
        key, position = json.decoder.scanstring(text, position + 1)
        position = _JSON_SPACE.match(text, _JSON_SPACE.match(text, position).end() + 1).end()  # past the ":"
        value, position = decoder.raw_decode(text, position)
        pairs.append((key, value, line))
        position = _JSON_SPACE.match(text, position).end()
        position += text[position] == ","


@functools.cache
def _loader():
    """PyYAML's safe loader, but reading 1e-3 as a number (YAML 1.1 reads it as text), as YAML 1.2 and JSON do."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                                 re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))
    return Loader


_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_TOML_KEY = re.compile(r"""\s*\[*\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*[=.\]]""")
