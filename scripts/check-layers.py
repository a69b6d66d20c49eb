#!/usr/bin/env python3
"""Modules point one way (DESIGN.md, "Workspace"): inside each crate, no
module imports one in a layer above its own, and no files import each
other in a circle.

Each crate's top-level modules are listed below, bottom layer first; a
module missing from the list fails the check, so a new one is placed on
purpose. An import is any `crate::a::b` path in a file (a `use`, a path
in code, a doc link does not count), outside `#[cfg(test)]` code and test
files. Files are the nodes of the circle check: `crate::a::b` is the file
of `a::b` when there is one, else `a`'s; `super::x` is resolved the same
way. A `mod.rs` (or `a.rs`) and its own children may refer to each other:
that is one module seen from two files.

    python3 scripts/check-layers.py            # check the crates
    python3 scripts/check-layers.py --prove    # and show a wrong import fails
"""

import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LAYERS = {
    "gateway/src": [
        # foundations
        ["error", "metrics", "tensor", "signature", "slots"],
        # engines
        ["backend"],
        # what one served version owns, and the version itself
        ["batcher", "runwatch", "stats", "guard", "contract", "drift", "comparison", "slicer", "warmup"],
        ["model"],
        # what is served: the table of routes; the codecs of a version's tensors
        ["routing", "protocol"],
        # background loops and sources
        [
            "report", "fast_rollback", "watchdog", "shadow", "predlog", "feedback",
            "cache", "repository", "reconcile", "compute", "config",
        ],
        ["server"],
    ],
    "registry/src": [
        # foundations
        ["error", "policy", "auth", "actions", "cron"],
        ["store", "config"],
        # domain, bottom up; `state` is what the API and the loops share
        ["artifacts", "stats", "drift", "feedback"],
        ["state"],
        ["quality", "rollout", "trigger"],
        ["monitor"],
        ["api"],
    ],
    "common/src": [
        ["clock", "documents", "exposition", "files", "layout", "objects", "openapi", "secrets", "tls"],
        ["listen"],
    ],
    "registry-client/src": None,  # only the circle check
    "sluice/src": None,
}

IMPORT = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)+)")
GROUPED = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)*)::\{([^;]*?)\}\s*;", re.S)


def code_of(path):
    text = path.read_text()
    test_code = text.find("#[cfg(test)]")
    if test_code >= 0:
        text = text[:test_code]
    # Comments (doc links included) are not imports.
    return re.sub(r"//[^\n]*", "", text)


def module_path(src, path):
    """`a/b.rs` and `a/b/mod.rs` are ["a", "b"]; `lib.rs` and `main.rs` []."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod" or parts == ["lib"] or parts == ["main"]:
        parts = parts[:-1]
    return parts


def is_test_file(src, path):
    parts = path.relative_to(src).parts
    return path.name == "tests.rs" or "tests" in parts[:-1]


def file_of(files, parts):
    """The file of the longest prefix of `parts` that is a module."""
    for end in range(len(parts), -1, -1):
        candidate = tuple(parts[:end])
        if candidate in files:
            return candidate
    return ()


def imports(src, path, files):
    here = module_path(src, path)
    is_dir_module = path.name in ("mod.rs", "lib.rs", "main.rs")
    text = code_of(path)
    paths = []
    for match in GROUPED.finditer(text):
        for item in re.split(r"[,{}]", match.group(3)):
            name = re.match(r"\s*([a-z_][a-z0-9_]*)", item)
            if name and name.group(1) != "self":
                paths.append((match.group(1), match.group(2) + "::" + name.group(1)))
    paths += [(match.group(1), match.group(2)) for match in IMPORT.finditer(text)]
    found = set()
    for anchor, rest in paths:
        names = rest.strip(":").split("::")
        if anchor == "crate":
            target = names
        else:
            # `super` of `a/b.rs` is `a`; of `a/b/mod.rs` also `a`.
            base = here[:-1] if not is_dir_module or here else here
            while names and names[0] == "super":
                base, names = base[:-1], names[1:]
            target = base + names
        node = file_of(files, target)
        if node and node != tuple(here):
            found.add(node)
    return found


def related(one, other):
    """A module and its own descendants may refer to each other."""
    shorter, longer = sorted((one, other), key=len)
    return longer[: len(shorter)] == shorter


def check(crate_dir, layers):
    src = ROOT / crate_dir if not isinstance(crate_dir, Path) else crate_dir
    files = {}
    for path in sorted(src.rglob("*.rs")):
        if not is_test_file(src, path):
            files[tuple(module_path(src, path))] = path
    graph = {node: imports(src, path, files) for node, path in files.items()}
    problems = []
    if layers is not None:
        layer_of = {name: index for index, names in enumerate(layers) for name in names}
        for node in files:
            if node and node[0] not in layer_of:
                problems.append(f"{src}: module `{node[0]}` is in no layer of scripts/check-layers.py: place it")
        for node, targets in graph.items():
            for target in targets:
                if not node or not target or node[0] == target[0]:
                    continue
                if layer_of.get(target[0], -1) > layer_of.get(node[0], -1):
                    problems.append(
                        f"{files[node].relative_to(src.parent)}: imports `{'::'.join(target)}`, "
                        f"a layer above `{node[0]}`"
                    )
    problems += [f"{src.relative_to(src.parent.parent) if src.is_relative_to(ROOT) else src}: files import each other in a circle: {cycle}"
                 for cycle in circles(graph)]
    return problems


def circles(graph):
    """Each strongly connected set of files (Tarjan), with edges between a
    module and its own descendants left out."""
    edges = {node: {t for t in targets if not related(node, t)} for node, targets in graph.items()}
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(" ↔ ".join(sorted("::".join(m) or "lib" for m in component)))

    sys.setrecursionlimit(10_000)
    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def prove():
    """A deliberate wrong import (the tensor type importing the server) must fail."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "src"
        shutil.copytree(ROOT / "gateway/src", copy)
        tensor = copy / "tensor.rs"
        lines = tensor.read_text().split("\n")
        after_docs = next(index for index, line in enumerate(lines) if not line.startswith("//!"))
        lines.insert(after_docs, "use crate::server::Server;")
        tensor.write_text("\n".join(lines))
        problems = check(copy, LAYERS["gateway/src"])
        if not any("a layer above `tensor`" in problem for problem in problems):
            print("check-layers: a wrong import went unseen: the check is broken", file=sys.stderr)
            return False
    print("check-layers: a deliberate wrong import (tensor → server) is refused", file=sys.stderr)
    return True


def main():
    problems = []
    for crate_dir, layers in LAYERS.items():
        problems += check(ROOT / crate_dir, layers)
    for problem in problems:
        print(f"check-layers: {problem}", file=sys.stderr)
    ok = not problems
    if "--prove" in sys.argv[1:]:
        ok = prove() and ok
    if ok:
        print(f"check-layers: {len(LAYERS)} crates, every import points down, no circle", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
