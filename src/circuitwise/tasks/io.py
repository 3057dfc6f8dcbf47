"""Task files: JSONL (one example a line), CSV (a header row) and YAML templates.

Every malformed input ends in :class:`TaskFileError` naming the file, line and field, or in a
:class:`TaskError` for problems of the file as a whole; no input reaches the user as another
exception (the fuzz tests in ``tests/unit/tasks`` hold this).

A JSONL file written by :func:`write_jsonl` starts with a header line
``{"circuitwise_task": {"name": …, "description": …, "meta": …}}`` so that reading it back gives
the same :class:`Task`; hand-written files need no header.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import string
from pathlib import Path
from typing import Any, Mapping

import yaml

from circuitwise.errors import TaskError, TaskFileError
from circuitwise.tasks.templating import fill
from circuitwise.tasks.task import Example, Task

REQUIRED = ("clean", "correct", "incorrect")
OPTIONAL = ("corrupted", "roles", "meta")
HEADER_KEY = "circuitwise_task"
# A YAML product of a few long lists can ask for billions of prompts; stop before building them.
MAX_GENERATED = 1_000_000
# No model's context holds a line this long; refusing it here is cheaper than tokenizing it.
MAX_LINE_CHARS = 1_000_000
# YAML aliases can make a small file stand for a huge document ("billion laughs"): bound the
# document as it would be written out, and its nesting, before building it.
MAX_YAML_VALUES = 1_000_000
MAX_YAML_DEPTH = 64
FIX_KEYS = (
    "Each example needs the string fields 'clean', 'correct', 'incorrect' and may have "
    "'corrupted' (plus 'roles' and 'meta' as written by `circuitwise tasks export`)"
)


def _check_text(value: str, path: Path, line: int | None, key: str) -> None:
    # JSON can spell lone surrogates ("\ud800"); no tokenizer or UTF-8 file can hold them.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise TaskFileError(path, line, key, "contains an invalid character (a lone surrogate)",
                            "Write the text as plain UTF-8") from None


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
        _check_text(value, path, line, key)
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
        # utf-8-sig: spreadsheet programs start CSV files with a byte-order mark.
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TaskError(
            f"Task file {path} does not exist. Give a built-in task name (`circuitwise tasks`) "
            "or the path of a .jsonl, .csv or .yaml file."
        ) from None
    except UnicodeDecodeError as e:
        raise TaskFileError(path, None, None, f"is not UTF-8 text ({e.reason})", "Save it as UTF-8") from None
    except IsADirectoryError:
        raise TaskError(f"{path} is a folder; give the task file inside it.") from None
    except OSError as e:
        raise TaskError(f"Cannot read task file {path}: {e.strerror or e}. Check its permissions.") from None


def _header(obj: Mapping[str, Any], path: Path, line: int) -> dict[str, Any]:
    head = obj[HEADER_KEY]
    fix = "The header line is written by `circuitwise tasks export`; remove it or restore it"
    if len(obj) != 1 or not isinstance(head, Mapping):
        raise TaskFileError(path, line, HEADER_KEY, "must be the only key and hold an object", fix)
    for key, kind in (("name", str), ("description", str), ("meta", Mapping)):
        if key in head and not isinstance(head[key], kind):
            raise TaskFileError(path, line, f"{HEADER_KEY}.{key}", f"must be a {kind.__name__}", fix)
    unknown = [k for k in head if k not in ("name", "description", "meta")]
    if unknown:
        raise TaskFileError(path, line, f"{HEADER_KEY}.{unknown[0]}", "unknown field", fix)
    return dict(head)


def read_jsonl(path: Path, text: str) -> list[Example]:
    return _read_jsonl(path, text)[0]


def _read_jsonl(path: Path, text: str) -> tuple[list[Example], dict[str, Any]]:
    examples: list[Example] = []
    head: dict[str, Any] = {}
    # Split on newlines only: str.splitlines also breaks at U+2028 and friends, which JSON
    # strings may hold unescaped (write_jsonl keeps non-ASCII text as it is).
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise TaskFileError(path, lineno, None, f"is not valid JSON ({e.msg}, column {e.colno})",
                                "Write one JSON object per line") from None
        except (ValueError, RecursionError) as e:  # e.g. a number too long to convert, deep nesting
            raise TaskFileError(path, lineno, None, f"is not usable JSON ({type(e).__name__})",
                                "Write one JSON object per line") from None
        if isinstance(obj, Mapping) and HEADER_KEY in obj:
            if examples or head:
                raise TaskFileError(path, lineno, HEADER_KEY, "may only appear on the first line",
                                    "Keep one header line, before the examples")
            head = _header(obj, path, lineno)
            continue
        examples.append(example_from_mapping(obj, path, lineno))
    return examples, head


def read_csv(path: Path, text: str) -> list[Example]:
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise TaskFileError(path, None, None, f"is not valid CSV ({e})", "Quote fields that contain commas") from None
    # Keep physical line numbers for messages although blank rows are skipped.
    numbered = [(i, r) for i, r in enumerate(rows, start=1) if any(c.strip() for c in r)]
    if not numbered:
        return []
    header_line, raw_header = numbered[0]
    header = [h.strip() for h in raw_header]
    fix = "CSV columns are clean, correct, incorrect[, corrupted], named once each in the first row"
    for h in header:
        if h not in REQUIRED and h != "corrupted":
            raise TaskFileError(path, header_line, h, "unknown column", fix)
        if header.count(h) > 1:
            raise TaskFileError(path, header_line, h, "is named twice", fix)
    for h in REQUIRED:
        if h not in header:
            raise TaskFileError(path, header_line, h, "column missing", fix)
    examples = []
    for lineno, row in numbered[1:]:
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
    "combination is used); 'corrupt' maps placeholders to new values for the corrupted prompt, "
    "'roles' maps role names (N1, ADJ …) to the placeholders they mark"
)
YAML_KEYS = ("name", "description", "examples", "templates", "template", "correct", "incorrect",
             "corrupt", "values", "product", "roles")


def _safe_load_bounded(text: str, path: Path) -> Any:
    """``yaml.safe_load``, refusing documents whose aliases expand too far or that nest too deep."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_size(node, path)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_yaml_size(root: yaml.Node, path: Path) -> None:
    # Sizes are counted per distinct node (aliases share one), so the count itself stays cheap.
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    on_path: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        kids = _yaml_children(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            if size[key] > MAX_YAML_VALUES:
                raise TaskFileError(path, node.start_mark.line + 1, None,
                                    f"expands (through aliases) to more than {MAX_YAML_VALUES:,} values",
                                    "Write the values out, or use fewer aliases of aliases")
            continue
        if key in size:
            continue
        if key in on_path:
            raise TaskFileError(path, node.start_mark.line + 1, None, "holds an alias that refers to itself",
                                "Remove the recursive alias")
        if depth > MAX_YAML_DEPTH:
            raise TaskFileError(path, node.start_mark.line + 1, None,
                                f"nests deeper than {MAX_YAML_DEPTH} levels", "Flatten the document")
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((k, depth + 1, False) for k in kids if id(k) not in size)


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _yaml_lines(text: str) -> dict[Any, Any]:
    """Line numbers of the top-level keys and of each item of 'examples'/'values' (best effort)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except Exception:  # the caller's safe_load reports the error itself
        return {}
    lines: dict[Any, Any] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                lines[k.value] = k.start_mark.line + 1
                if k.value in ("examples", "values") and isinstance(v, yaml.SequenceNode):
                    lines[(k.value, "items")] = [item.start_mark.line + 1 for item in v.value]
    return lines


def _template_fields(template: str, path: Path, key: str, line: int | None) -> set[str]:
    """The placeholders of ``template``; only plain ``{name}`` ones are allowed."""
    fix = "Use {name} placeholders (letters, digits, _) and write {{ and }} for literal braces"
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise TaskFileError(path, line, key, f"is not a valid template ({e})", fix) from None
    fields = set()
    for _, field, spec, conv in parsed:
        if field is None:
            continue
        # Attribute access, indexing and format specs would run code on values or build huge text.
        if not field.isidentifier() or spec or conv:
            raise TaskFileError(path, line, key, f"has the placeholder {{{field}}} with "
                                f"{'a format spec or conversion' if field.isidentifier() else 'a non-name'}", fix)
        fields.add(field)
    return fields


def read_yaml(path: Path, text: str) -> tuple[list[Example], dict[str, Any]]:
    try:
        doc = _safe_load_bounded(text, path)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise TaskFileError(path, line, None, f"is not valid YAML ({getattr(e, 'problem', None) or e})", YAML_FIX) from None
    except (RecursionError, ValueError, TypeError, OverflowError) as e:
        # safe_load's constructors raise these for absurd input (deep nesting, out-of-range dates).
        raise TaskFileError(path, None, None, f"is not usable YAML ({type(e).__name__})", YAML_FIX) from None
    if doc is None:
        return [], {}
    if not isinstance(doc, Mapping):
        raise TaskFileError(path, None, None, "must be a mapping at the top level", YAML_FIX)
    lines = _yaml_lines(text)
    at = lambda key: lines.get(key) if isinstance(lines.get(key), int) else None  # noqa: E731
    for key in doc:
        if key not in YAML_KEYS:
            raise TaskFileError(path, at(key), str(key), "unknown key", YAML_FIX)
    head = {k: doc[k] for k in ("name", "description") if k in doc}
    for k, v in head.items():
        if not isinstance(v, str):
            raise TaskFileError(path, at(k), k, "must be a string", YAML_FIX)
    examples: list[Example] = []
    listed = doc.get("examples")
    if listed is not None:
        if not isinstance(listed, list):
            raise TaskFileError(path, at("examples"), "examples", "must be a list of example objects", YAML_FIX)
        item_lines = lines.get(("examples", "items"), [])
        for i, obj in enumerate(listed):
            examples.append(example_from_mapping(obj, path, item_lines[i] if i < len(item_lines) else at("examples")))
    if "templates" in doc and "template" in doc:
        raise TaskFileError(path, at("template"), "template", "cannot be combined with 'templates'", YAML_FIX)
    tkey = "templates" if "templates" in doc else "template"
    templates = doc.get(tkey)
    if templates is None:
        for key in ("values", "product", "correct", "incorrect", "corrupt", "roles"):
            if key in doc:
                raise TaskFileError(path, at(key), "templates", f"missing ('{key}' fills templates)", YAML_FIX)
        return examples, head
    if isinstance(templates, str):
        templates = [templates]
    if not isinstance(templates, list) or not templates or not all(isinstance(t, str) and t.strip() for t in templates):
        raise TaskFileError(path, at(tkey), tkey, "must be a string or a non-empty list of non-empty strings", YAML_FIX)
    fields: set[str] = set()
    for t in templates:
        fields |= _template_fields(t, path, tkey, at(tkey))
    answer_t: dict[str, str] = {}
    for key in ("correct", "incorrect"):
        v = doc.get(key)
        if not isinstance(v, str):
            raise TaskFileError(path, at(key), key, "missing or not a string template for the answer", YAML_FIX)
        _template_fields(v, path, key, at(key))
        answer_t[key] = v
    corrupt = doc.get("corrupt")
    if corrupt is not None:
        if not (isinstance(corrupt, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in corrupt.items())):
            raise TaskFileError(path, at("corrupt"), "corrupt", "must map placeholders to string templates", YAML_FIX)
        for k, v in corrupt.items():
            if k not in fields:
                raise TaskFileError(path, at("corrupt"), f"corrupt.{k}", "is not a placeholder of the templates", YAML_FIX)
            _template_fields(v, path, f"corrupt.{k}", at("corrupt"))
    roles = doc.get("roles")
    if roles is not None:
        if not (isinstance(roles, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in roles.items())):
            raise TaskFileError(path, at("roles"), "roles", "must map role names to placeholder names", YAML_FIX)
        for role, field in roles.items():
            if field not in fields:
                raise TaskFileError(path, at("roles"), f"roles.{role}", f"names {field!r}, which is not a placeholder of the templates", YAML_FIX)
    rows = _rows(doc, path, at)
    if len(rows) * len(templates) > MAX_GENERATED:
        raise TaskFileError(path, at("product") or at("values"), "product" if "product" in doc else "values",
                            f"would generate {len(rows) * len(templates):,} prompts (limit {MAX_GENERATED:,})",
                            "Use fewer or shorter lists, or 'values' rows instead of a product")
    row_lines = lines.get(("values", "items"), [])
    for rowno, row in enumerate(rows, start=1):
        line = row_lines[rowno - 1] if rowno <= len(row_lines) else at("values") or at("product")
        bad = [k for k, v in row.items() if not isinstance(v, (str, int, float))]
        if bad:
            raise TaskFileError(path, line, bad[0], f"value row {rowno} must hold strings or numbers", YAML_FIX)
        row = {k: str(v) for k, v in row.items()}
        # The corrupted prompt is the same template over a changed row: corrupt: {adj: "{opp}"}.
        bent = {**row, **{k: _fill(v, row, path, f"corrupt.{k}", rowno, line) for k, v in (corrupt or {}).items()}}
        for t in templates:
            clean, offsets = _fill_roles(t, row, path, tkey, rowno, line)
            obj: dict[str, Any] = {
                "clean": clean,
                "correct": _fill(answer_t["correct"], row, path, "correct", rowno, line),
                "incorrect": _fill(answer_t["incorrect"], row, path, "incorrect", rowno, line),
                "corrupted": _fill(t, bent, path, tkey, rowno, line) if corrupt else None,
            }
            if roles:
                missing = [r for r, f in roles.items() if f not in offsets]
                if missing:
                    raise TaskFileError(path, at("roles"), f"roles.{missing[0]}", f"marks {{{roles[missing[0]]}}}, "
                                        f"which the template {t!r} does not use", "Give every template each role's placeholder")
                obj["roles"] = {"END": offsets["END"]} | {r: offsets[f] for r, f in roles.items()}
            examples.append(example_from_mapping(obj, path, line))
    return examples, head


def _fill(template: str, row: Mapping[str, str], path: Path, key: str, rowno: int, line: int | None) -> str:
    return _fill_roles(template, row, path, key, rowno, line)[0]


def _fill_roles(template: str, row: Mapping[str, str], path: Path, key: str, rowno: int,
                line: int | None) -> tuple[str, dict[str, int]]:
    missing = [f for f in _template_fields(template, path, key, line) if f not in row]
    if missing:
        raise TaskFileError(path, line, key, f"uses {{{missing[0]}}} but value row {rowno} has no {missing[0]!r}", YAML_FIX)
    return fill(template, row)


def _rows(doc: Mapping[str, Any], path: Path, at: Any) -> list[dict[str, Any]]:
    if "values" in doc and "product" in doc:
        raise TaskFileError(path, at("product"), "product", "cannot be combined with 'values'", YAML_FIX)
    if "values" in doc:
        rows = doc["values"]
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
            raise TaskFileError(path, at("values"), "values", "must be a list of mappings", YAML_FIX)
        return [{str(k): v for k, v in r.items()} for r in rows]
    if "product" in doc:
        prod = doc["product"]
        if not isinstance(prod, Mapping) or not all(isinstance(v, list) for v in prod.values()):
            raise TaskFileError(path, at("product"), "product", "must map names to lists of values", YAML_FIX)
        size = math.prod(len(v) for v in prod.values())
        if size > MAX_GENERATED:
            raise TaskFileError(path, at("product"), "product", f"has {size:,} combinations (limit {MAX_GENERATED:,})",
                                "Use fewer or shorter lists")
        keys = [str(k) for k in prod]
        return [dict(zip(keys, combo)) for combo in itertools.product(*prod.values())]
    return [{}]


def _check_line_lengths(path: Path, text: str) -> None:
    if len(text) <= MAX_LINE_CHARS:
        return
    for lineno, line in enumerate(text.split("\n"), start=1):
        if len(line) > MAX_LINE_CHARS:
            raise TaskFileError(path, lineno, None, f"has {len(line):,} characters (limit {MAX_LINE_CHARS:,} a line)",
                                "No model's context holds a prompt this long; shorten it")


def _refuse_folder(path: Path) -> None:
    """A folder given as a task: said as such (it was "unknown task file type '(none)'"), and an output folder
    of circuitwise's with what its command needs instead (``compare`` runs studies, it reads no run folders)."""
    from circuitwise.runfolder import read_marker

    mark = read_marker(path)
    if mark is not None:
        again = (f" It re-runs with `circuitwise {mark['command']} --config {path / 'config.yaml'}`."
                 if (path / "config.yaml").is_file() and mark["command"] in ("run", "compare") else "")
        raise TaskError(f"{path} is the output folder of `circuitwise {mark['command']}`, not a task: every command "
                        "(compare too) runs from tasks, a built-in name (`circuitwise tasks`) or a .jsonl, .csv or "
                        f".yaml file.{again}")
    raise TaskError(f"{path} is a folder, not a task file; give the task file inside it, or a built-in task name "
                    "(`circuitwise tasks`).")


def parse_task_text(path: Path, text: str, name: str | None = None) -> Task:
    """The task in ``text``, read as the file type of ``path``'s suffix (``path`` names it in errors)."""
    suffix = path.suffix.lower()
    head: dict[str, Any] = {}
    _check_line_lengths(path, text)
    if suffix == ".jsonl":
        examples, head = _read_jsonl(path, text)
    elif suffix == ".csv":
        examples = read_csv(path, text)
    elif suffix in (".yaml", ".yml"):
        examples, head = read_yaml(path, text)
    else:
        raise TaskError(
            f"Cannot read {path}: unknown task file type {suffix or '(none)'!r}. Use .jsonl (one "
            "JSON object a line), .csv or .yaml."
        )
    task = Task(name or head.get("name") or path.stem, tuple(examples), head.get("description", ""),
                dict(head.get("meta") or {}))
    if not task.examples:
        raise TaskError(
            f"Task file {path} holds no examples. Add at least one with 'clean', 'correct' and "
            "'incorrect' fields."
        )
    return task


def read_task_file(path: Path, name: str | None = None) -> Task:
    path = Path(path)
    if path.is_dir():
        _refuse_folder(path)
    if path.suffix.lower() not in (".jsonl", ".csv", ".yaml", ".yml"):
        return parse_task_text(path, "", name)  # raises the unknown-type error before reading
    return parse_task_text(path, _read_text(path), name)


def write_jsonl(task: Task, path: Path) -> None:
    """Write ``task`` (header line, then one example a line) so :func:`read_task_file` gives it back."""
    from circuitwise.runfolder import atomic_write_text, output_error

    head: dict[str, Any] = {"name": task.name}
    if task.description:
        head["description"] = task.description
    if task.meta:
        head["meta"] = dict(task.meta)
    try:
        lines = [json.dumps({HEADER_KEY: head}, ensure_ascii=False)]
        lines += [json.dumps(ex.to_json(), ensure_ascii=False) for ex in task.examples]
    except (TypeError, ValueError) as e:
        raise TaskError(f"Task {task.name!r} cannot be written as JSON ({e}); keep 'meta' to strings, "
                        "numbers, lists and objects.") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(e, path.parent, "create the folder") from None
    atomic_write_text(path, "\n".join(lines) + "\n")


__all__ = ["parse_task_text", "read_task_file", "write_jsonl"]
