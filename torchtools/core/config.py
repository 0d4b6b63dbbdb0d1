"""Settings, each declared once: a command's frozen config dataclass is its options.

A `Setting` holds a flag's spelling, help, panel, bounds and choices; a config field takes one with its
default (`epochs: int = EPOCHS(10)`). From the fields come the Typer signature (`core/command.py`), the
one validation of a value (`Config.build` for the command line and the environment, `Config.from_saved`
for a checkpoint: the same bounds, the same `error:` line) and the config saved in checkpoints. A field
without a Setting is a fixed value of the command (transfer's StepLR schedule), saved too.
A default of `DEPENDS` is filled by the config's `fill` from the values given (a recipe, a method).
Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import math
import os
import reprlib
import shlex
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torchtools.core.errors import UserError
from torchtools.core.paths import Input, Output


class _Depends:
    """The default of a setting whose value comes from others (the recipe's, the method's)."""

    def __repr__(self) -> str:
        return "DEPENDS"


DEPENDS: Any = _Depends()
FLOAT32_MAX = 3.4028234663852886e38
READS, WRITES = "reads", "writes"


@dataclass(frozen=True)
class Setting:
    """One option: `Setting("--epochs", "-e", help=..., min=1)`; call it with a default to make a config field."""

    flag: str
    short: str | None = None
    help: str = ""
    panel: str | None = None
    min: float | None = None
    max: float | None = None
    below: float | None = None  # an upper bound the value may not reach (--label-smoothing 1 learns nothing)
    choices: tuple[str, ...] | None = None
    saved: bool = True  # a hyperparameter: saved in checkpoints, checked against them on --resume/--checkpoint
    resumable: bool = False  # a resumed run may change it (more epochs)
    show_default: bool = True
    negative: str | None = None  # the off switch of a flag (--no-amp); None: a bare flag
    aliases: tuple[str, ...] = ()  # further spellings (--csv for --data)
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None  # the text typed -> the value (the command line gives text)
    words: tuple[str, ...] = ()  # values taken as they are beside the type's (--lr auto)
    role: str | None = None  # READS: a file or folder the run reads; WRITES: a file it writes (core/paths.py)
    suffixes: tuple[str, ...] = ()  # WRITES: the name must end in one of these
    envvar: str | None = None  # the environment variable that gives the value when the flag is not typed
    length: int | None = None  # a list of exactly this many values (--mean R,G,B: 3)
    # What a value means, where two spellings mean one thing (--weights none and a checkpoint's None): a typed
    # value and a checkpoint's are compared by it (Run, on --resume and --checkpoint)
    meaning: Callable[[Any], Any] | None = None
    # The word a settled None is spelt as where None is a choice the user made, not "not given" (--weights none:
    # the run holds None, and a --config file saying null would ask for the weights again)
    none_word: str | None = None

    def __call__(self, default: Any = None) -> Any:
        if isinstance(default, list):
            return dataclasses.field(default_factory=lambda: list(default), metadata={"setting": self})
        return dataclasses.field(default=default, metadata={"setting": self})

    def check(self, name: str, value: Any, kind: Any, *, typed: bool = True) -> Any:
        """The value, converted to the field's type, or a UserError saying what is wrong with it. Text is
        parsed only as typed on the command line (`typed`), never from a checkpoint."""
        if value is None:
            if _optional(kind):
                return None
            if not self.flag.startswith("-"):  # a positional argument, from the command line or a --config file
                raise UserError(f"pass {self.flag} (or {name}: in a --config file)")
            raise UserError(f"{self.flag} needs a value")
        if isinstance(value, str) and value in self.words:
            return value
        base = _base(kind)
        parsing = self.parse is not None and typed and isinstance(value, str)
        # Text parsed into a list is quoted whole in every error: the list parsed from it is not what was typed.
        whole = shown(value) if parsing and typing.get_origin(base) is list else None
        try:
            if parsing:
                value = self.parse(value)
            value = _convert(value, base)
        except UserError as error:  # the parse's own words: what is wrong beyond the type
            raise UserError(f"{self.flag} {whole or shown(value)}: {error}") from None
        except (TypeError, ValueError):
            raise UserError(f"{self.flag} {whole or shown(value)}: expected {_kind_name(base)}") from None
        if self.length is not None and len(value) != self.length:
            raise UserError(f"{self.flag} {whole or shown(value)}: give {self.length} numbers ({self.metavar})")
        for item in value if isinstance(value, list) else [value]:
            problem = f"choose one of {', '.join(self.choices)}" if self.choices is not None and \
                item not in self.choices else None
            if problem is None and isinstance(item, (int, float)) and not isinstance(item, bool):
                problem = self._out_of_range(item)
            if problem is not None:
                raise UserError(f"{self.flag} {whole}: {shown(item)} {problem}" if whole is not None else
                                f"{self.flag} {shown(item)}: {problem}")
        return value

    def same(self, typed: Any, saved: Any) -> bool:
        """A typed value and a checkpoint's say the same thing."""
        return typed == saved or (self.meaning is not None and self.meaning(typed) == self.meaning(saved))

    def _out_of_range(self, number: float) -> str | None:
        """What is wrong with a number outside this setting's bounds ("must be at least 1 (range 1..10)"), or None."""
        if isinstance(number, float) and not math.isfinite(number):
            return "must be a finite number"
        if isinstance(number, float) and abs(number) > FLOAT32_MAX:  # the models and their optimizers are float32
            return f"must be within float32's range (at most {FLOAT32_MAX:.7g} in size)"
        if self.min is not None and number < self.min:
            return f"must be at least {_number(self.min)}{self._range()}"
        if self.max is not None and number > self.max:
            return f"must be at most {_number(self.max)}{self._range()}"
        if self.below is not None and number >= self.below:
            return f"must be below {_number(self.below)}{self._range()}"
        return None

    def _range(self) -> str:
        if self.min is not None and self.max is not None:
            return f" (range {_number(self.min)}..{_number(self.max)})"
        if self.min is not None and self.below is not None:
            return f" (range {_number(self.min)} up to, not including, {_number(self.below)})"
        return ""


@dataclass(frozen=True, kw_only=True)
class Config:
    """Base of every command's settings. Subclasses are frozen, keyword-only dataclasses whose fields are
    the command's options (with a Setting) and its fixed values (without one)."""

    @classmethod
    def settings(cls) -> dict[str, tuple[Setting, Any]]:
        """name -> (Setting, type) for each option, in declaration order."""
        hints = typing.get_type_hints(cls)
        return {field.name: (field.metadata["setting"], hints[field.name])
                for field in dataclasses.fields(cls) if "setting" in field.metadata}

    @classmethod
    def fill(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The values of DEPENDS fields, from the others (a recipe's, a method's defaults)."""
        return values

    def settle(self, run: Any) -> Config:
        """The config with what the command learns from its inputs before any work (transfer: the architecture
        and preprocessing its weights name), called once by Run.start after the checkpoint's values are merged."""
        return self

    @classmethod
    def depends_help(cls, name: str) -> str:
        """What --help says of a DEPENDS default: "Default: the recipe's (course: 10, fast: 2)."."""
        return ""

    @classmethod
    def build(cls, values: dict[str, Any]) -> Config:
        """The config of the options given: DEPENDS defaults filled, every value checked."""
        defaults = {field.name: field.default for field in dataclasses.fields(cls)
                    if field.default is not dataclasses.MISSING}
        values = cls.fill({**defaults, **values})
        return cls(**cls._checked(values, lambda name, error: error, typed=True))

    @classmethod
    def from_saved(cls, saved: Any, *, source: object) -> Config:
        """The config saved in a checkpoint, through the same checks as the command line's: a hand-edited or
        foreign file is one error naming the key."""
        if not isinstance(saved, dict):
            raise UserError(f"{source} holds no config (it was not saved by this version of torchtools)")
        # A fixed value missing from the file is the command's own, not a choice the file could have made: a
        # checkpoint written before the field existed was trained at it (the neutral Hyperparameters).
        names = [name for name in cls.saved_names() if name in saved or name in cls.settings()]
        missing = [name for name in names if name not in saved]
        if missing:
            raise UserError(f"{source} was saved by another version of torchtools: its config lacks "
                            f"{', '.join(missing)}")
        defaults = {field.name: field.default for field in dataclasses.fields(cls)
                    if field.name not in names and field.default is not dataclasses.MISSING}
        values = {**defaults, **{name: saved[name] for name in names}}
        return cls(**cls._checked(values, lambda name, error: UserError(
            f"{source}: its config's {name} is wrong ({error}); the file was edited or comes from elsewhere"),
            typed=False))

    @classmethod
    def _checked(cls, values: dict[str, Any], wrap: Callable[[str, UserError], UserError], *,
                 typed: bool) -> dict[str, Any]:
        settings, checked = cls.settings(), {}
        hints = typing.get_type_hints(cls)
        for name, value in values.items():
            try:
                if name in settings:
                    checked[name] = settings[name][0].check(name, value, settings[name][1], typed=typed)
                else:
                    checked[name] = _fixed(name, value, hints[name])
            except UserError as error:
                raise wrap(name, error) from None
        return checked

    @classmethod
    def saved_names(cls) -> list[str]:
        """The fields a checkpoint keeps: hyperparameters and fixed values, not where output goes."""
        return [field.name for field in dataclasses.fields(cls)
                if "setting" not in field.metadata or field.metadata["setting"].saved]

    def saved(self) -> dict[str, Any]:
        return {name: _plain(getattr(self, name)) for name in self.saved_names()}

    def resumable(self) -> frozenset[str]:
        """Fields a resumed run may change; every other saved field must match the checkpoint's."""
        return frozenset(name for name, (setting, _) in self.settings().items() if setting.resumable)

    @classmethod
    def option(cls, name: str) -> str:
        """How the user spells a field: batch_size -> --batch-size."""
        setting = cls.settings().get(name)
        return setting[0].flag if setting else name

    def writes(self) -> list[Output]:
        """Every file and folder this run writes, for `Run.start` to check before any work (core/paths.py): the
        options declared WRITES that are given; a command adds the names it derives and what it writes only
        under other options (a best file, a report's files, a TensorBoard folder)."""
        return [Output(Path(value), setting.flag, suffixes=setting.suffixes)
                for name, value, setting in self._paths(WRITES)]

    def reads(self) -> list[Input]:
        """Every file and folder this run reads (the options declared READS, and what `data_reads` finds in
        them), which no output may be."""
        given = [Input(Path(value), setting.flag) for name, value, setting in self._paths(READS)]
        try:
            found = self.data_reads()
        except UserError:  # the data's own reader says what is wrong with it, in its turn, before any work
            found = []
        return given + found

    def data_reads(self) -> list[Input]:
        """What the run reads inside its data (each picture, the dataset's files, the folders read as data): a
        command that reads a dataset lists it here, from the same functions its reader uses."""
        return []

    def _paths(self, role: str) -> list[tuple[str, Any, Setting]]:
        found = []
        for name, (setting, _) in self.settings().items():
            value = getattr(self, name)
            if setting.role == role and value is not None:
                found += [(name, item, setting) for item in (value if isinstance(value, list) else [value])]
        return found


def file_name(text: str) -> Path:
    """A file to write, as typed: a name ending in "/" names a folder (Path would drop the slash, and the run
    would write a file of the folder's name)."""
    if text == "":  # no path, not the current folder: "expected a path", as _convert says
        raise ValueError(text)
    if text.endswith(("/", os.sep)):
        raise UserError("ends in '/', so it names a folder: name a file (in it, or elsewhere)")
    return Path(text)


def comma_separated_ints(text: str) -> list[int]:
    """"6,4" -> [6, 4] (a ValueError for anything else)."""
    return _comma_separated(text, int)


def comma_separated_floats(text: str) -> list[float]:
    """"0.5,0.5,0.5" -> [0.5, 0.5, 0.5] (a ValueError for anything else)."""
    return _comma_separated(text, float)


def _comma_separated(text: str, number: Callable[[str], Any]) -> list:
    """Numbers between commas; blank text is none. An empty place ("0.5,,0.5", "6,") is a mistake, never
    skipped: the list would silently be shorter than typed."""
    parts = text.split(",") if text.strip() else []
    if any(not part.strip() for part in parts):
        raise UserError("a number is missing between its commas")
    return [number(part) for part in parts]


def _fixed(name: str, value: Any, kind: Any) -> Any:
    """A field without an option (a fixed value of the command, or one a recipe sets) is checked by type."""
    if value is DEPENDS:
        raise UserError(f"{name} has no value")
    try:
        value = _convert(value, _base(kind)) if value is not None or not _optional(kind) else None
    except (TypeError, ValueError):
        raise UserError(f"{name} {shown(value)}: expected {_kind_name(_base(kind))}") from None
    if isinstance(value, float) and not (math.isfinite(value) and abs(value) <= FLOAT32_MAX):
        raise UserError(f"{name} {value}: must be a finite number within float32's range")
    return value


def _optional(kind: Any) -> bool:
    return type(None) in typing.get_args(kind)


def _base(kind: Any) -> Any:
    """int | None -> int; list[int] stays as it is."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return next(arg for arg in typing.get_args(kind) if arg is not type(None))
    return kind


def _convert(value: Any, kind: Any) -> Any:
    """A value of the field's type: exact for bools and ints (no "abc", no 2.5 as an int, no True as 1)."""
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, (list, tuple)):
            raise TypeError(value)
        return [_convert(part, item) for part in value]
    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError(value)
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(value)
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(value)
        return float(value)
    if kind is str:
        if hasattr(value, "value") and isinstance(value.value, str):  # a Typer choice
            return value.value
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    if kind is Path:
        if not isinstance(value, (str, Path)) or value == "":  # "" is no path, not the current folder
            raise TypeError(value)
        return Path(value)
    raise TypeError(kind)


def _kind_name(kind: Any) -> str:
    if typing.get_origin(kind) is list:
        item = _kind_name(typing.get_args(kind)[0]).removeprefix("a ").removeprefix("an ")
        return f"a list of {item}s"
    return {bool: "true or false", int: "an integer", float: "a number", str: "text", Path: "a path"}.get(
        kind, str(kind))


def _plain(value: Any) -> Any:
    """A value as a checkpoint keeps it: paths as text (weights_only loading takes plain types)."""
    return str(value) if isinstance(value, Path) else value


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else str(value)


def shown(value: Any) -> str:
    """A value as an error line shows it: as it is typed (6,4; ants,bees; '' and 'a b' quoted as a shell wants
    them), control characters escaped, and bounded: a config file's list may be nested or aliased without end
    (YAML anchors: [*a, *a, ...] nine deep) and a checkpoint's classes run to thousands."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.isprintable():
        shown = shlex.quote(value[:_SHOWN_CHARACTERS + 1])
    elif isinstance(value, (list, tuple)) and all(map(_printable, value[:_SHOWN_ITEMS])):
        shown = ",".join(map(str, value[:_SHOWN_ITEMS])) + (",..." if len(value) > _SHOWN_ITEMS else "")
    else:
        shown = _SHOWN.repr(value)
    return shown if len(shown) <= _SHOWN_CHARACTERS else shown[:_SHOWN_CHARACTERS - 4] + " ..."


def _printable(item: Any) -> bool:
    """A number, or text with nothing a terminal would act on."""
    return isinstance(item, (int, float)) or isinstance(item, str) and item.isprintable()


_SHOWN_CHARACTERS = 80
_SHOWN_ITEMS = 40  # the join stops long before a huge list's end: at most 80 characters are shown
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxtuple, _SHOWN.maxdict, _SHOWN.maxstring, _SHOWN.maxother = 2, 4, 4, 4, 60, 60
