"""The package's structure: every import points down the layer order (fastpgan.LAYERS),
every Triton kernel has an ahead-of-time spec, and every op follows the op contract."""

from __future__ import annotations

import ast
import inspect
import re
import sys
import types
from pathlib import Path

import pytest
import torch

import fastpgan
from fastpgan.backend import OPS

ROOT = Path(fastpgan.__file__).parent
PACKAGES = {"fastpgan": ROOT, "fastpgan.kernels": ROOT.parent / "kernels"}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (kernels/ is installed as fastpgan.kernels)."""
    found = {}
    for package, folder in PACKAGES.items():
        for file in folder.rglob("*.py"):
            parts = list(file.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = file
    return found


def _room(module: str) -> str | None:
    """The room of a fastpgan module ("ops" for fastpgan.ops.adain); None for the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _level(module: str) -> int:
    room = _room(module)
    return next(i for i, rooms in enumerate(fastpgan.LAYERS) if room in rooms)


def _imports(module: str, source: str, is_package: bool) -> list[tuple[str, int, bool]]:
    """(imported fastpgan module, line, inside a function or class) for each import."""
    tree = ast.parse(source)
    nested = {id(node) for scope in ast.walk(tree)
              if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
              for node in ast.walk(scope) if node is not scope}
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # "from fastpgan import ops" imports the module fastpgan.ops
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                       for alias in node.names]
        else:
            continue
        found += [(t, node.lineno, id(node) in nested) for t in targets
                  if t == "fastpgan" or t.startswith("fastpgan.")]
    return found


MODULES = _modules()


def _violations(module: str, source: str, is_package: bool) -> list[str]:
    """What is wrong with one module's imports of fastpgan, one line each."""
    problems = []
    for target, line, nested in _imports(module, source, is_package):
        if nested:
            problems.append(f"{module}:{line} imports {target} inside a function or class")
        if _room(module) is not None and (_room(target) is None
                                          or _level(target) > _level(module)):
            problems.append(f"{module}:{line} imports {target}, a room above its own")
    return problems


def test_every_module_is_in_a_room():
    rooms = {room for layer in fastpgan.LAYERS for room in layer}
    homeless = sorted(m for m in MODULES if _room(m) is not None and _room(m) not in rooms)
    assert not homeless, f"add these rooms to fastpgan.LAYERS: {homeless}"


def test_every_import_points_down_and_none_hides_in_a_function():
    problems = [p for module, file in MODULES.items()
                for p in _violations(module, file.read_text(encoding="utf-8"),
                                     file.name == "__init__.py")]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source,problem", [
    ("from fastpgan.train.loop import Trainer\n", "a room above its own"),
    ("from ..runs import checkpoint\n", "a room above its own"),
    ("def f():\n    from fastpgan.ops import bias_act\n", "inside a function"),
    ("import fastpgan\n", "a room above its own"),
])
def test_the_import_check_catches_what_it_must(source, problem):
    assert any(problem in p for p in _violations("fastpgan.models.progan", source, False))


def test_the_import_check_allows_imports_from_below():
    source = ("from fastpgan.ops import bias_act\n"
              "from fastpgan.models.pretrained import load_checked\n")
    assert _violations("fastpgan.models.progan", source, False) == []


# ---------------------------------------------------------------- kernels

triton = pytest.importorskip("triton")


@triton.jit
def lonely_kernel(x_ptr):
    """A kernel no module declares a spec for (the check below must name it)."""
    triton.language.store(x_ptr, 0)


def test_every_triton_kernel_has_an_aot_spec():
    from fastpgan.kernels import aot

    modules = aot.kernel_modules()
    assert {"adain", "bias_act", "minibatch_stddev"} <= set(modules), "found on disk"
    assert aot.without_specs(modules) == []
    stray = types.ModuleType(__name__)
    stray.lonely_kernel = lonely_kernel
    assert aot.without_specs({"stray": stray}) == ["stray.lonely_kernel"]


def test_every_aot_spec_says_how_many_bytes_its_kernel_must_move():
    """The report's floor column: bytes over the copy bandwidth. Checked by hand for the
    benchmark's bias_act (bf16 16x512x64x64 with pixel norm; bench/NOTES.md counts
    5 x 33.5 M elements x 2 bytes for forward + backward)."""
    from fastpgan.kernels import aot

    specs = [s for module in aot.kernel_modules().values() for s in aot.specs_of(module)]
    assert all(s.bytes_moved > 0 for s in specs), [s for s in specs if s.bytes_moved <= 0]
    by_kernel = {s.kernel: s.bytes_moved for s in specs
                 if s.variant == "nchw/c512/pn" and s.dtype == "bf16"}
    elements, pixels = 16 * 512 * 64 * 64, 16 * 64 * 64
    assert by_kernel["bias_act_fwd_kernel"] == 2 * 2 * elements + 4 * pixels + 4 * 512
    assert by_kernel["bias_act_bwd_kernel"] == 3 * 2 * elements + 2 * 4 * pixels + 4 * 512


# ---------------------------------------------------------------- the op contract


def test_every_op_is_exported():
    """Each registered op is exported, with its reference (the registry is the one list
    of ops: adding one is README's "Adding an op")."""
    assert OPS, "no op registered"
    for op in OPS.values():
        assert getattr(fastpgan.ops, op.name) is op.function
        assert getattr(fastpgan.ops, f"{op.name}_reference") is op.reference


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_follows_the_contract(name):
    check_contract(OPS[name])


def check_contract(op) -> None:
    """The op contract: signatures, the module's documentation, the library operators,
    and its declared bad call refused with its declared message."""
    function = dict(inspect.signature(op.function).parameters)
    reference = dict(inspect.signature(op.reference).parameters)
    assert function.pop("backend").default is None, "backend=None: the process default"
    assert [(p.name, p.kind, p.default) for p in function.values()] == [
        (p.name, p.kind, p.default) for p in reference.values()], \
        "the reference takes the op's arguments"
    doc = sys.modules[op.function.__module__].__doc__
    assert re.search(r"et al\.\s+\d{4}|NVlabs", doc), "the module names its source"
    assert "Double backward" in doc and "Fused path" in doc, "and how it is computed"
    if op.provider == "extension":
        fastpgan.extension.load_extension()
    for qualname in op.library_ops:
        namespace, opname = qualname.split("::")
        assert hasattr(getattr(torch.ops, namespace), opname), qualname
    for function in (op.reference, op.function):
        with pytest.raises(ValueError, match=op.tests.bad_call_message):
            op.tests.bad_call(function)


def test_doctor_reports_every_op():
    from fastpgan.doctor import report

    text = "\n".join(report())
    assert all(f"  {name} " in text for name in OPS)


def test_setup_installs_every_package():
    """A package folder setup.py does not list would be missing from a regular install
    (an editable one finds it on disk, so only this test notices)."""
    setup = (ROOT.parent / "setup.py").read_text()
    listed = set(re.findall(r'"(fastpgan(?:\.\w+)*)"', setup.split("packages=")[1].split("]")[0]))
    folders = {"fastpgan"} | {f"fastpgan.{p.parent.name}" for p in ROOT.glob("*/__init__.py")}
    assert folders - listed == set(), "add these to setup.py's packages"


def test_only_the_architecture_entry_and_the_models_name_architectures():
    """No room outside models/ compares anything with an architecture's name (``if arch
    == "stylegan2"``): it asks the entry (fastpgan.models.architectures)."""
    from fastpgan.models import ARCHITECTURES

    found = []
    for module, path in MODULES.items():
        if _room(module) == "models":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                names = [c.value for c in ast.walk(node)
                         if isinstance(c, ast.Constant) and c.value in ARCHITECTURES]
                if names:
                    found.append(f"{module}:{node.lineno} compares with {names}")
    assert not found, found
