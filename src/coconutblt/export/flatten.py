"""Flatten package modules into one source file: the exporter's way of shipping the model's
own code as Hugging Face remote code.

Why not a copy kept by hand: the modeling file of an export is generated at export time from
hybrid.py and the package modules it imports, transitively, in dependency order, so any change
to the model is exported as is. Intra-package imports (`from coconutblt... import ...`) are
dropped, after checking that every name they bring in is defined by an earlier flattened
module; the remaining std/torch imports are hoisted into one block at the top. Whatever cannot
be flattened safely (a name bound twice, an import of a module not flattened, a relative
import) is a one-line `UserError`.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

from coconutblt.errors import UserError

# The exported modeling file holds these modules and every coconutblt module they import (at
# top level or inside a function), dependencies first; see `model_sources`. hybrid is the
# model; cache is its incremental decoder (`DecodeState`), which the wrapper's KV cache wraps.
# errors and config_tree come along because `ModelConfig.from_dict`, which validates
# config.json's `model_config`, is built on them.
MODEL_ROOTS = ("coconutblt.model.cache", "coconutblt.model.hybrid")

# Top-level names that a later module-level `def` may rebind over a hoisted import, with why the
# rebinding is harmless. hybrid.py imports `dataclasses.replace`; config.py defines
# `replace(cfg, **changes)`, which is `dataclasses.replace` for a dataclass.
ALLOWED_SHADOWS = {"replace": ("dataclasses", "replace")}


class _Section:
    """One source file, parsed: its lines, top-level bindings and imports."""

    def __init__(self, name: str, source: str, path: str, label: str) -> None:
        self.name, self.path, self.label = name, path, label
        self.lines = source.splitlines()
        try:
            self.tree = ast.parse(source, filename=path)
        except SyntaxError as exc:
            raise UserError(f"{path}: cannot parse ({exc.msg}, line {exc.lineno})") from None
        self.defined: set[str] = set()  # names bound at top level by def/class/assignment
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defined.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    self.defined.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))


def module_source(module: str) -> tuple[str, str]:
    """(source text, file path) of an installed coconutblt module."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise UserError(
            f"cannot find the source of {module}; export needs coconutblt installed from source"
        )
    return Path(spec.origin).read_text(encoding="utf-8"), spec.origin


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _owning_body(parent: ast.AST, node: ast.stmt) -> list[ast.stmt]:
    for field in ("body", "orelse", "finalbody", "handlers"):
        body = getattr(parent, field, None)
        if isinstance(body, list) and node in body:
            return body
    raise ValueError(f"import at line {node.lineno} is in no statement list")


def flatten_sources(
    sections: list[tuple[str, str, str, str]], siblings: tuple[str, ...] = ()
) -> str:
    """[(module name, source, path, label)] in dependency order -> one module's source.

    Drops `from coconutblt.X import a, b` (top level or nested) after checking that X is one of
    the sections (an earlier one, for top-level imports) and defines a and b; hoists every other
    top-level import into one block; refuses a name bound by two sections in different ways.
    `siblings` names the modules written beside the flattened file: a relative import of one of
    them (`from .configuration_x import C`) is kept, any other relative import refused.
    """
    parsed = [_Section(*s) for s in sections]
    index = {s.name: i for i, s in enumerate(parsed)}
    futures: set[str] = set()
    plain: set[tuple[str, str | None]] = set()  # import M [as N]
    froms: dict[tuple[str, int], set[tuple[str, str | None]]] = {}  # from M import a [as b]
    imported: dict[str, tuple[str, str]] = {}  # bound name -> (module, name)
    bodies: list[str] = []

    def bind_import(bound: str, origin: tuple[str, str], where: str) -> None:
        if imported.setdefault(bound, origin) != origin:
            raise UserError(
                f"{where}: '{bound}' is imported from both {imported[bound][0]} and {origin[0]}; cannot flatten"
            )

    for i, sec in enumerate(parsed):
        parents = _parents(sec.tree)
        drop: set[int] = set()  # 0-based line numbers to delete
        replace: dict[int, str] = {}  # 0-based line -> new text
        for node in ast.walk(sec.tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            where = f"{sec.path}:{node.lineno}"
            top = parents[node] is sec.tree
            line = sec.lines[node.lineno - 1]
            indent = line[: node.col_offset]
            rest = sec.lines[node.end_lineno - 1][node.end_col_offset :].split("#")[0]
            if indent.strip() or rest.strip():
                raise UserError(f"{where}: an import must be alone on its lines to be flattened")
            internal = (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").split(".")[0] == "coconutblt"
            )
            if isinstance(node, ast.Import) and any(
                a.name.split(".")[0] == "coconutblt" for a in node.names
            ):
                raise UserError(
                    f"{where}: use `from coconutblt.x import name` so that the import can be flattened"
                )
            if internal:
                j = index.get(node.module)
                if j is None or (top and j >= i):
                    order = "an earlier section" if top else "a flattened section"
                    raise UserError(
                        f"{where}: imports {node.module}, which is not {order} being flattened"
                    )
                for alias in node.names:
                    if (
                        alias.name not in parsed[j].defined
                        or (alias.asname or alias.name) != alias.name
                    ):
                        raise UserError(
                            f"{where}: `{alias.name}` must be defined at top level of {node.module} and imported without `as`"
                        )
            elif not top:
                continue  # a nested std/third-party import stays where it is
            elif isinstance(node, ast.ImportFrom) and node.module == "__future__":
                futures.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level and node.module not in siblings:
                    raise UserError(f"{where}: relative imports cannot be flattened")
                key = (node.module or "", node.level)
                for alias in node.names:
                    froms.setdefault(key, set()).add((alias.name, alias.asname))
                    bind_import(
                        alias.asname or alias.name, ("." * node.level + key[0], alias.name), where
                    )
            else:
                for alias in node.names:
                    plain.add((alias.name, alias.asname))
                    bind_import(alias.asname or alias.name.split(".")[0], (alias.name, ""), where)
            span = range(node.lineno - 1, node.end_lineno)
            body = sec.tree.body if top else _owning_body(parents[node], node)
            if not top and len(body) == 1:  # keep the block non-empty
                replace[node.lineno - 1] = f"{indent}pass"
                span = range(node.lineno, node.end_lineno)
            drop.update(span)
            after = node.end_lineno  # 0-based index of the line after the import
            if not top and after < len(sec.lines) and not sec.lines[after].strip():
                drop.add(after)  # and the blank line that followed it
        doc = sec.tree.body[0] if sec.tree.body else None
        if (
            isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            drop.update(range(doc.lineno - 1, doc.end_lineno))
            comment = [
                f"# {t}".rstrip() for t in ast.get_docstring(sec.tree, clean=True).splitlines()
            ]
            replace[doc.lineno - 1] = "\n".join(comment)
            drop.discard(doc.lineno - 1)
        kept = [
            replace.get(n, text)
            for n, text in enumerate(sec.lines)
            if n not in drop or n in replace
        ]
        text = "\n".join(kept).strip("\n")
        while "\n\n\n\n" in text:
            text = text.replace("\n\n\n\n", "\n\n\n")
        header = f"# {'-' * 24} {sec.label} {'-' * 24}"
        bodies.append(f"{header}\n{text}\n")

    seen: dict[str, str] = {}
    for sec in parsed:
        for name in sec.defined:
            if name in seen:
                raise UserError(
                    f"{sec.path}: '{name}' is also defined in {seen[name]}; cannot flatten"
                )
            seen[name] = sec.path
            if name in imported and ALLOWED_SHADOWS.get(name) != imported[name]:
                raise UserError(
                    f"{sec.path}: '{name}' shadows `{imported[name][1]}` from {imported[name][0]}; cannot flatten"
                )

    def group(module: str, level: int = 0) -> int:  # std, third party, this folder
        return 2 if level else 0 if module.split(".")[0] in sys.stdlib_module_names else 1

    def alias(name: str, asname: str | None) -> str:
        return name + (f" as {asname}" if asname else "")

    groups: list[list[str]] = [[], [], []]
    for module, asname in sorted(plain, key=lambda x: (x[0], x[1] or "")):
        groups[group(module)].append(f"import {alias(module, asname)}")
    for (module, level), names in sorted(froms.items()):
        items = ", ".join(alias(*n) for n in sorted(names, key=lambda x: (x[0], x[1] or "")))
        groups[group(module, level)].append(f"from {'.' * level}{module} import {items}")
    blocks = [f"from __future__ import {', '.join(sorted(futures))}"] if futures else []
    blocks += ["\n".join(g) for g in groups if g]
    return "\n\n".join(blocks) + "\n\n\n" + "\n\n".join(bodies)


def _package_imports(source: str) -> list[str]:
    """The coconutblt modules a source imports with `from coconutblt.x import ...`, in order."""
    found = [
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
        and node.level == 0
        and (node.module or "").split(".")[0] == "coconutblt"
    ]
    return list(dict.fromkeys(found))


def model_sources(roots: tuple[str, ...] = MODEL_ROOTS) -> list[str]:
    """`roots` and the coconutblt modules they import, transitively, dependencies first."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(module: str) -> None:
        if module in order or module in visiting:
            return  # a cycle can only come from a nested import; `flatten_sources` checks order
        visiting.add(module)
        for dep in _package_imports(module_source(module)[0]):
            visit(dep)
        visiting.discard(module)
        order.append(module)

    for root in roots:
        visit(root)
    return order
