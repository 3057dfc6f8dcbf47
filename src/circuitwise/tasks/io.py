"""Task files: JSONL (one example a line), CSV (a header row) and YAML templates.

Every malformed input ends in :class:`TaskFileError` naming the file, line and field.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import string
from pathlib import Path
from typing import Any, Mapping

import yaml

from circuitwise.errors import TaskError, TaskFileError
from circuitwise.tasks.task import Example, Task

REQUIRED = ("clean", "correct", "incorrect")
OPTIONAL = ("corrupted", "roles", "meta")
FIX_KEYS = (
    "Each example needs the string fields 'clean', 'correct', 'incorrect' and may have "
    "'corrupted' (plus 'roles' and 'meta' as written by `circuitwise tasks export`)"
)


def example_from_mapping(obj: Any, path: Path, line: int | None) -> Example:
    """Validate one example object (from any format) and build it."""
    if not isinstance(obj, Mapping):
        raise TaskFileError(path, line, None, f"expected an object, got {type(obj).__name__}", FIX_KEYS)
    for key in obj:
        if key not in REQUIRED and key not in OPTIONAL:
            raise TaskFileError(path, line, str(key), "unknown field", FIX_KEYS)
    for key in REQUIRED:
        if key not in obj:
            raise TaskFileError(path, line, key, "missing", FIX_KEYS)
    for key in (*REQUIRED, "corrupted"):
        value = obj.get(key)
        if key == "corrupted" and value is None:
            continue
        if not isinstance(value, str):
            raise TaskFileError(path, line, key, f"must be a string, got {type(value).__name__}", FIX_KEYS)
        if key != "corrupted" and value.strip() == "":
            raise TaskFileError(path, line, key, "is empty", FIX_KEYS)
    roles = obj.get("roles")
    if roles is not None:
        ok = isinstance(roles, Mapping) and all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(obj["clean"])
            for k, v in roles.items()
        )
        if not ok:
            raise TaskFileError(
                path, line, "roles", "must map role names to character offsets inside 'clean'", FIX_KEYS
            )
    meta = obj.get("meta")
    if meta is not None and not isinstance(meta, Mapping):
        raise TaskFileError(path, line, "meta", "must be an object", FIX_KEYS)
    return Example(
        clean=obj["clean"],
        correct=obj["correct"],
        incorrect=obj["incorrect"],
        corrupted=obj.get("corrupted") or None,
        roles=dict(roles) if roles else None,
        meta=dict(meta) if meta else None,
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskError(
            f"Task file {path} does not exist. Give a built-in task name (`circuitwise tasks`) "
            "or the path of a .jsonl, .csv or .yaml file."
        ) from None
    except UnicodeDecodeError as e:
        raise TaskFileError(path, None, None, f"is not UTF-8 text ({e.reason})", "Save it as UTF-8") from None
    except IsADirectoryError:
        raise TaskError(f"{path} is a folder; give the task file inside it.") from None


def read_jsonl(path: Path, text: str) -> list[Example]:
    examples = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise TaskFileError(path, lineno, None, f"is not valid JSON ({e.msg}, column {e.colno})",
                                "Write one JSON object per line") from None
        examples.append(example_from_mapping(obj, path, lineno))
    return examples


def read_csv(path: Path, text: str) -> list[Example]:
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise TaskFileError(path, None, None, f"is not valid CSV ({e})", "Quote fields that contain commas") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        return []
    header = [h.strip() for h in rows[0]]
    for h in header:
        if h not in REQUIRED and h != "corrupted":
            raise TaskFileError(path, 1, h, "unknown column", "CSV columns are clean, correct, incorrect[, corrupted]")
    examples = []
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise TaskFileError(path, lineno, None, f"has {len(row)} fields, the header has {len(header)}",
                                "Quote fields that contain commas")
        obj: dict[str, Any] = dict(zip(header, row))
        if obj.get("corrupted") == "":
            obj["corrupted"] = None
        examples.append(example_from_mapping(obj, path, lineno))
    return examples


YAML_FIX = (
    "A YAML task has 'name', optionally 'description', and either 'examples' (a list of example "
    "objects) or 'templates' (strings with {placeholders}) with 'correct' and 'incorrect' "
    "answer templates, filled from 'values' (a list of rows) or 'product' (lists whose every "
    "combination is used); 'corrupt' maps placeholders to new values for the corrupted prompt"
)


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def _fill(template: str, row: Mapping[str, Any], path: Path, key: str, rowno: int) -> str:
    try:
        return template.format(**row)
    except KeyError as e:
        raise TaskFileError(path, None, key, f"uses {{{e.args[0]}}} but value row {rowno} has no {e.args[0]!r}", YAML_FIX) from None
    except (ValueError, IndexError) as e:
        raise TaskFileError(path, None, key, f"is not a valid template ({e})", "Use {name} placeholders; write {{ and }} for braces") from None


def read_yaml(path: Path, text: str) -> tuple[list[Example], dict[str, Any]]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise TaskFileError(path, line, None, f"is not valid YAML ({getattr(e, 'problem', e)})", YAML_FIX) from None
    if doc is None:
        return [], {}
    if not isinstance(doc, Mapping):
        raise TaskFileError(path, None, None, "must be a mapping at the top level", YAML_FIX)
    known = {"name", "description", "examples", "templates", "template", "correct", "incorrect",
             "corrupt", "values", "product"}
    for key in doc:
        if key not in known:
            raise TaskFileError(path, None, str(key), "unknown key", YAML_FIX)
    head = {k: doc[k] for k in ("name", "description") if k in doc}
    for k, v in head.items():
        if not isinstance(v, str):
            raise TaskFileError(path, None, k, "must be a string", YAML_FIX)
    examples: list[Example] = []
    for obj in doc.get("examples") or []:
        examples.append(example_from_mapping(obj, path, None))
    templates = doc.get("templates", doc.get("template"))
    if templates is None:
        if any(k in doc for k in ("values", "product", "correct", "incorrect", "corrupt")):
            raise TaskFileError(path, None, "templates", "missing", YAML_FIX)
        return examples, head
    if isinstance(templates, str):
        templates = [templates]
    if not isinstance(templates, list) or not templates or not all(isinstance(t, str) for t in templates):
        raise TaskFileError(path, None, "templates", "must be a string or a non-empty list of strings", YAML_FIX)
    answer_t: dict[str, str] = {}
    for key in ("correct", "incorrect"):
        v = doc.get(key)
        if not isinstance(v, str):
            raise TaskFileError(path, None, key, "missing or not a string template for the answer", YAML_FIX)
        answer_t[key] = v
    corrupt = doc.get("corrupt")
    if corrupt is not None and not (
        isinstance(corrupt, Mapping) and all(isinstance(v, str) for v in corrupt.values())
    ):
        raise TaskFileError(path, None, "corrupt", "must map placeholders to string templates", YAML_FIX)
    for rowno, row in enumerate(_rows(doc, path), start=1):
        bad = [k for k, v in row.items() if not isinstance(v, (str, int, float))]
        if bad:
            raise TaskFileError(path, None, bad[0], f"value row {rowno} must hold strings or numbers", YAML_FIX)
        # The corrupted prompt is the same template over a changed row: corrupt: {adj: "{opp}"}.
        bent = {**row, **{k: _fill(v, row, path, "corrupt", rowno) for k, v in (corrupt or {}).items()}}
        for t in templates:
            examples.append(Example(
                clean=_fill(t, row, path, "templates", rowno),
                correct=_fill(answer_t["correct"], row, path, "correct", rowno),
                incorrect=_fill(answer_t["incorrect"], row, path, "incorrect", rowno),
                corrupted=_fill(t, bent, path, "templates", rowno) if corrupt else None,
            ))
    return examples, head


def _rows(doc: Mapping[str, Any], path: Path) -> list[dict[str, Any]]:
    if "values" in doc and "product" in doc:
        raise TaskFileError(path, None, "product", "cannot be combined with 'values'", YAML_FIX)
    if "values" in doc:
        rows = doc["values"]
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
            raise TaskFileError(path, None, "values", "must be a list of mappings", YAML_FIX)
        return [{str(k): v for k, v in r.items()} for r in rows]
    if "product" in doc:
        prod = doc["product"]
        if not isinstance(prod, Mapping) or not all(isinstance(v, list) for v in prod.values()):
            raise TaskFileError(path, None, "product", "must map names to lists of values", YAML_FIX)
        keys = [str(k) for k in prod]
        return [dict(zip(keys, combo)) for combo in itertools.product(*prod.values())]
    return [{}]


def read_task_file(path: Path, name: str | None = None) -> Task:
    text = _read_text(path)
    suffix = path.suffix.lower()
    head: dict[str, Any] = {}
    if suffix == ".jsonl":
        examples = read_jsonl(path, text)
    elif suffix == ".csv":
        examples = read_csv(path, text)
    elif suffix in (".yaml", ".yml"):
        examples, head = read_yaml(path, text)
    else:
        raise TaskError(
            f"Cannot read {path}: unknown task file type {suffix or '(none)'!r}. Use .jsonl (one "
            "JSON object a line), .csv or .yaml."
        )
    task = Task(name or head.get("name") or path.stem, tuple(examples), head.get("description", ""))
    if not task.examples:
        raise TaskError(
            f"Task file {path} holds no examples. Add at least one with 'clean', 'correct' and "
            "'incorrect' fields."
        )
    return task


def write_jsonl(task: Task, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for ex in task.examples:
            f.write(json.dumps(ex.to_json(), ensure_ascii=False) + "\n")
    tmp.replace(path)


__all__ = ["read_task_file", "write_jsonl"]
