"""Keras and TensorFlow internals stay in `tfdistill/_keras_internals.py`; no import cycles;
the Keras version check at import."""

from __future__ import annotations

import ast
import importlib
import inspect
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

import tfdistill
from tfdistill import _keras_internals

pytestmark = pytest.mark.smoke  # the subset CI runs on the lowest Keras allowed

PACKAGE = Path(tfdistill.__file__).parent
INTERNALS = "_keras_internals.py"
PRIVATE_MODULES = (
    "tensorflow.python",
    "keras.src",
    "tf_keras.src",
    "tensorflow_model_optimization.python",
)
ATTRIBUTE_CALLS = {"getattr", "hasattr", "setattr", "delattr", "__setattr__", "__getattribute__"}
OWN_PREFIX = "_tfdistill"  # private attributes tfdistill puts on other libraries' objects


def _sources() -> dict[str, ast.Module]:
    """{path relative to the package: parsed module} for every module but the internals one."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative != INTERNALS:
            found[relative] = ast.parse(path.read_text(), filename=str(path))
    return found


# Underscored but public and documented in the standard library: os._exit ends a forked child
# without running its parent's exit handlers (tfdistill/_quiet.py's filter process).
STANDARD_LIBRARY = frozenset({"_exit"})


def _is_private(name: str) -> bool:
    if name in STANDARD_LIBRARY:
        return False
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _self_target(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def _string_arg(call: ast.Call) -> tuple[ast.AST, str] | None:
    """(object, name) of `getattr(obj, "name", ...)` and its kin, else None."""
    func = call.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    if name not in ATTRIBUTE_CALLS or len(call.args) < 2:
        return None
    target, attribute = call.args[0], call.args[1]
    if isinstance(attribute, ast.Constant) and isinstance(attribute.value, str):
        return target, attribute.value
    return None


def defined_names(trees: list[ast.Module]) -> set[str]:
    """The private names tfdistill defines: functions, classes, module and local variables,
    import aliases, and attributes it sets on `self` / `cls`."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split(".")[0])
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                if _self_target(node.value):
                    names.add(node.attr)
            elif isinstance(node, ast.Call) and (found := _string_arg(node)):
                if _self_target(found[0]):
                    names.add(found[1])
    return {name for name in names if _is_private(name)}


def violations(tree: ast.Module, defined: set[str]) -> list[str]:
    """Lines of `tree` that import another library's private module or touch a private name
    that tfdistill does not define."""
    found = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for module in modules:
            if any(module == p or module.startswith(p + ".") for p in PRIVATE_MODULES):
                found.append(f"line {node.lineno}: import of {module}")
                break
        name = None
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.Call) and (string := _string_arg(node)):
            name = string[1]
        if name and _is_private(name) and name not in defined:
            if not name.startswith(OWN_PREFIX):
                found.append(f"line {node.lineno}: private name {name}")
    return found


def test_only_keras_internals_touches_private_names():
    sources = _sources()
    checked = sources
    defined = defined_names(list(checked.values()))
    found = {path: v for path, tree in checked.items() if (v := violations(tree, defined))}
    assert not found, f"route these through tfdistill/_keras_internals.py: {found}"


@pytest.mark.parametrize(
    "snippet, flagged",
    [
        ("x = model._flatten_layers()", "private name _flatten_layers"),
        ("x = getattr(model, '_keras_history', None)", "private name _keras_history"),
        ("object.__setattr__(model, '_maybe_symbolic_build', f)", "_maybe_symbolic_build"),
        ("from tensorflow.python.framework import config", "import of tensorflow.python"),
        ("import keras.src.backend", "import of keras.src.backend"),
        ("from tf_keras.src import layers", "import of tf_keras.src"),
        ("from keras import src", "import of keras.src"),
    ],
)
def test_the_checker_flags_private_names(snippet, flagged):
    defined = defined_names([ast.parse("class A:\n    def _mine(self):\n        self._x = 1\n")])
    assert {"_mine", "_x"} <= defined
    (line,) = violations(ast.parse(snippet), defined)
    assert flagged in line


def test_the_checker_lets_tfdistills_own_names_through():
    defined = defined_names([ast.parse("def _helper():\n    pass\n")])
    code = "a._helper()\nb.__class__\nc.public\nsetattr(m, '_tfdistill_mark', 1)\n"
    assert violations(ast.parse(code), defined) == []


def test_no_foreign_private_method_is_overridden():
    """A tfdistill class that subclasses another library's class defines no private method
    or attribute of that class (overriding `BackupAndRestore._save_model` counts as touching
    it), outside `_keras_internals`."""
    overridden = []
    for relative in _sources():
        name = "tfdistill." + relative.removesuffix(".py").replace("/", ".")
        module = importlib.import_module(name.removesuffix(".__init__"))
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            foreign = [b for b in cls.__mro__[1:] if not b.__module__.startswith("tfdistill")]
            foreign = [b for b in foreign if b is not object]
            for attribute in vars(cls):
                if _is_private(attribute) and any(hasattr(b, attribute) for b in foreign):
                    overridden.append(f"{cls.__module__}.{cls.__name__}.{attribute}")
    assert not overridden


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    root = PACKAGE.parent
    return (root / relative).with_suffix(".py").is_file() or (root / relative).is_dir()


def import_graph() -> dict[str, set[str]]:
    """{tfdistill module: the tfdistill modules it imports}, imports inside functions too."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("tfdistill"))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                if not base.startswith("tfdistill"):
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    edges.add(full if _is_module(full) else base)
        edges.discard(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert "tfdistill.compress.bridge" in graph["tfdistill.compress"]
    assert "tfdistill.folding" in graph["tfdistill.compress.bridge"]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_find_cycle_finds_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    "version, warns",
    [
        ("3.12.0", False),
        ("3.15.1", False),
        ("3.13.2", False),
        ("3.11.3", True),
        ("3.16.0", True),
        ("4.0.0", True),
        ("3.16.0.dev2025", True),
    ],
)
def test_keras_version_check(version, warns):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _keras_internals.check_keras_version(version)
    assert bool(caught) == warns
    if warns:
        (warning,) = caught
        assert issubclass(warning.category, UserWarning)
        assert version in str(warning.message)
        assert _keras_internals.TESTED_KERAS in str(warning.message)


def test_installed_keras_is_in_the_tested_range():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _keras_internals.check_keras_version(keras.__version__)


KEYS = ("inputs", "teacher_logits", "teacher_inputs")


def test_cached_batch_keys_are_defined_once():
    from tfdistill import batches, data, distiller

    assert distiller.TEACHER_LOGITS is batches.TEACHER_LOGITS
    assert distiller.INPUTS is batches.INPUTS
    literals = []
    for relative, tree in _sources().items():
        if relative == "batches.py":
            continue
        keys = [k for n in ast.walk(tree) if isinstance(n, ast.Dict) for k in n.keys]
        keys += [n.slice for n in ast.walk(tree) if isinstance(n, ast.Subscript)]
        keys += [n for n in ast.walk(tree) if isinstance(n, ast.Compare)]
        for node in keys:
            for constant in ast.walk(node) if node is not None else ():
                if isinstance(constant, ast.Constant) and constant.value in KEYS:
                    literals.append(f"{relative}:{constant.lineno} {constant.value!r}")
    assert not literals, "use tfdistill.batches.INPUTS / TEACHER_LOGITS"
    teacher = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    x, y = np.ones((4, 2), "float32"), np.zeros(4, "int64")
    (inputs, _), *_ = data.cache_teacher_outputs((x, y), teacher, batch_size=4)
    assert set(inputs) == {batches.INPUTS, batches.TEACHER_LOGITS}
    assert batches.split_cached(inputs)[1].shape == (4, 3)


def test_setup_py_allows_the_tested_keras_range():
    setup = (PACKAGE.parent / "setup.py").read_text()
    assert f'"keras{_keras_internals.TESTED_KERAS}"' in setup
    ci = (PACKAGE.parent / ".ci" / "run").read_text()
    assert "keras==3.12.0" in ci and _keras_internals.TESTED_KERAS.startswith(">=3.12,")
