"""Write README's table of every command × option, generated from the typer app.

    python scripts/options_table.py          # rewrite the table in README.md
    python scripts/options_table.py --check  # exit 1 if README.md's table is out of date

The table sits between the two marker comments in README.md; a test checks it is current, so a
new or renamed option without re-running this script fails the tests. Run from the repository root.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

START = "<!-- options-table:start (scripts/options_table.py writes this) -->"
END = "<!-- options-table:end -->"
_DEFAULT = re.compile(r"\[default: ([^\]]*)\]")


def _commands() -> list[tuple[str, Any]]:
    """(name, click command) of every command that takes options, in `--help` order."""
    import typer

    from circuitwise.cli import _register, app

    _register()
    out: list[tuple[str, Any]] = []

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, (*path, name))
        elif path:
            out.append((" ".join(path), cmd))

    walk(typer.main.get_command(app), ())
    return out


def _cell(param: Any, ctx: Any) -> str:
    record = param.get_help_record(ctx)
    found = _DEFAULT.search(record[1]) if record else None
    # A default the help text describes in words (e.g. "default: cuda, then mps…") is marked as present.
    text = found.group(1).split(";")[0].strip() if found else "✓"  # "10; x>=1": the range is not the default
    switch = {o.lstrip("-"): word for o, word in ((param.opts[0], "on"), *((o, "off") for o in param.secondary_opts))}
    text = switch.get(text, text)  # click shows a switch's default as its flag's name
    return text.replace("|", "\\|") if len(text) <= 32 else "✓"


def _long(param: Any) -> str:
    longs = [o for o in param.opts if o.startswith("--")] or list(param.opts)
    return longs[0] + (" / " + param.secondary_opts[0] if param.secondary_opts else "")


def table() -> str:
    """The markdown table: one row per option, one column per command, each cell the option's default."""
    from typer._click.core import Context

    commands = _commands()
    rows: dict[str, dict[str, str]] = {}
    shorts: dict[str, dict[str, set[str]]] = {}  # option → short flag → the commands that have it
    for name, cmd in commands:
        ctx = Context(cmd, info_name=f"circuitwise {name}")
        for p in cmd.params:
            if p.param_type_name != "option" or p.hidden or p.name == "help":
                continue
            rows.setdefault(_long(p), {})[name] = _cell(p, ctx)
            for o in p.opts:
                if not o.startswith("--"):
                    shorts.setdefault(_long(p), {}).setdefault(o, set()).add(name)
    names = [n for n, _ in commands]
    lines = ["| option | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for flag, cells in rows.items():
        label = f"`{flag}`"
        for short, where in sorted(shorts.get(flag, {}).items()):
            label += f" (`{short}`)" if where == set(cells) else f" (`{short}` in {', '.join(sorted(where))})"
        lines.append(f"| {label} | " + " | ".join(cells.get(n, "") for n in names) + " |")
    return "\n".join(lines)


def deprecated() -> str:
    from circuitwise.cli.options import DEPRECATED

    items = [f"`{command} {old}` → `{new}`" for command, spellings in DEPRECATED.items()
             for old, new in spellings.items()]
    return ("Older spellings still work, with a deprecation warning, and are hidden from `--help`: "
            + "; ".join(items) + ".")


def block() -> str:
    return "\n".join((START, "", table(), "", deprecated(), "", END))


def current(readme: str) -> str:
    """``readme`` with its table replaced by the generated one."""
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md has no {START} … {END} block to fill.")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + block() + tail


def main(argv: list[str]) -> int:
    path = Path("README.md")
    text = path.read_text(encoding="utf-8")
    new = current(text)
    if "--check" in argv:
        if new != text:
            sys.stderr.write("README.md's options table is out of date: run python scripts/options_table.py\n")
            return 1
        return 0
    path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
