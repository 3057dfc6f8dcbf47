"""The base of every file model: strict fields, a versioned header, and reading with clear errors.

A file circuitwise writes starts with ``format`` (what it is) and a version; reading checks both
before the fields, so a file of an earlier release or another tool gets one sentence naming the
version found, the version this circuitwise reads, and what to do — never a validation dump.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from circuitwise.errors import SchemaError
from circuitwise.types import nan_to_none

M = TypeVar("M", bound="FileModel")

# A number that may be missing: NaN and ±inf are written as null (strict JSON).
Num = float | None


def first_problems(e: ValidationError, shown: int = 3) -> str:
    """The first ``shown`` fields that do not fit, as 'field.path: what is wrong', and how many more."""
    problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
                         for err in e.errors()[:shown])
    more = f" (and {e.error_count() - shown} more)" if e.error_count() > shown else ""
    return problems + more


class Section(BaseModel):
    """A part of a file. Unknown fields are an error: a typo or a stray key never slips through."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (NaN → null), by the names the file uses."""
        out: dict[str, Any] = nan_to_none(self.model_dump(mode="python", by_alias=True))
        return out


class Open(Section):
    """A typed-but-open mapping: the known fields are checked, others (added by later methods) are kept."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, protected_namespaces=())


class FileModel(Section):
    """A whole file. Subclasses set FORMAT, VERSION_FIELD and VERSION, and what to do with an old file."""

    FORMAT: ClassVar[str]
    VERSION_FIELD: ClassVar[str] = "schema_version"
    VERSION: ClassVar[int]
    # Told after "re-create it": how to get a current file (the command that writes one).
    REMEDY: ClassVar[str]
    # Earlier versions this circuitwise still reads unchanged.
    READS: ClassVar[frozenset[int]] = frozenset()

    @classmethod
    def check_header(cls, data: Any, source: str) -> None:
        """Raise SchemaError unless ``data`` is this kind of file at a version this circuitwise reads."""
        what = cls.FORMAT.rsplit(".", 1)[-1]
        if not isinstance(data, dict):
            raise SchemaError(f"{source} is not a circuitwise {what} file: it holds a JSON "
                              f"{type(data).__name__}, not an object. {cls.REMEDY}")
        found = data.get(cls.VERSION_FIELD)
        expected = f"{cls.FORMAT} schema version {cls.VERSION}"
        if data.get("format") != cls.FORMAT:
            legacy = cls.legacy(data) if "format" not in data else None
            if legacy is None:
                raise SchemaError(
                    f"{source} is not a circuitwise {what} file (its \"format\" is {data.get('format')!r}, "
                    f"expected {cls.FORMAT!r}). {cls.REMEDY}")
            raise SchemaError(f"{source} was written by {legacy} and has no schema version; this circuitwise "
                              f"reads {expected}. {cls.remedy_for(data)}")
        if isinstance(found, bool) or not isinstance(found, int):
            raise SchemaError(f"{source}: \"{cls.VERSION_FIELD}\" must be a whole number, not {found!r}; this "
                              f"circuitwise reads {expected}. {cls.REMEDY}")
        if found > cls.VERSION:
            raise SchemaError(f"{source} has {cls.FORMAT} schema version {found}, newer than the version "
                              f"{cls.VERSION} this circuitwise reads. Upgrade circuitwise to read it.")
        if found != cls.VERSION and found not in cls.READS:
            raise SchemaError(f"{source} has {cls.FORMAT} schema version {found}; this circuitwise reads "
                              f"{expected}. {cls.remedy_for(data)}")

    @classmethod
    def legacy(cls, data: dict[str, Any]) -> str | None:
        """Who wrote ``data`` if it is this kind of file from before the schema ("circuitwise 0.1.0"), else None."""
        return None

    @classmethod
    def remedy_for(cls, data: dict[str, Any]) -> str:
        """What to do with an old file of this kind (default: the REMEDY)."""
        return cls.REMEDY

    @classmethod
    def validate_data(cls: type[M], data: Any, source: str) -> M:
        """The typed file, or a SchemaError naming the first fields that do not fit."""
        cls.check_header(data, source)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise SchemaError(f"{source} does not fit {cls.FORMAT} schema version {cls.VERSION}: "
                              f"{first_problems(e)}. {cls.REMEDY}") from None

    @classmethod
    def load(cls: type[M], path: str | Path) -> M:
        """Read and validate a file (a folder means the file of this kind inside it)."""
        file = Path(path)
        if file.is_dir():
            file = file / cls.FILENAME  # type: ignore[attr-defined]
        path = file
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SchemaError(f"{path} does not exist. {cls.REMEDY}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise SchemaError(f"Cannot read {path}: {e}. {cls.REMEDY}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SchemaError(f"{path} is not valid JSON ({e}). {cls.REMEDY}") from None
        return cls.validate_data(data, str(path))

    def __str__(self) -> str:
        # A file's fields can be megabytes; print() shows the same short line as repr().
        return repr(self)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON; a top-level section that was not computed (None by default) is left out."""
        data = super().to_json()
        return {k: v for k, v in data.items()
                if not (v is None and k in type(self).model_fields and type(self).model_fields[k].default is None)}

    def dump(self) -> dict[str, Any]:
        """The file's JSON, validated again as a whole (nested lists may have been changed in place)."""
        data = self.to_json()
        # A failure here is circuitwise's bug, not the user's: it keeps its traceback.
        type(self).model_validate(data)
        return data

    def dump_text(self, indent: int | None = 1) -> str:
        """:meth:`dump` as JSON text (NaN → null), serialised and re-validated by pydantic's own
        JSON code: for a run's results.json, rewritten after every stage, 3x less time than
        ``json.dumps`` of :meth:`dump`."""
        fields = type(self).model_fields
        unset = {k for k, f in fields.items() if f.default is None and getattr(self, k) is None}
        text = self.model_dump_json(by_alias=True, indent=indent, exclude=unset)
        type(self).model_validate_json(text)  # a failure is circuitwise's bug: keeps its traceback
        return text

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON Schema of this file (what a reader accepts), as exported to ``schema/`` in the repository."""
        schema = cls.model_json_schema(by_alias=True, mode="validation")
        name = cls.FILENAME.removesuffix(".json")  # type: ignore[attr-defined]
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://github.com/circuitwise/circuitwise/schema/{name}/{cls.VERSION}"
        schema["title"] = f"{cls.FORMAT} schema version {cls.VERSION}"
        schema["x-schema-version"] = cls.VERSION
        return schema


class Interval(Section):
    """A percentile bootstrap interval over prompts (``evaluation.bootstrap.Interval``). Every field
    that holds one is optional: files written before intervals existed have none."""

    low: Num
    high: Num
    level: float
    resamples: int
    seed: int
    method: Literal["percentile"] = "percentile"


__all__ = ["FileModel", "Interval", "Num", "Open", "Section"]
