"""Every difference between the seed's public surface (``protocol_fixtures/seed_surface.json``, captured
from ``sandai-operator-client==0.4.6`` by ``capture.py seed-surface``) and ours is named in the migration
guide (``docs/migration.md``). ``python tests/test_seed_surface.py`` prints the differences."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
SEED = json.loads((ROOT / "protocol_fixtures" / "seed_surface.json").read_text())
GUIDE = ROOT / "docs" / "migration.md"


def _parameters(signature: str) -> List[Tuple[str, str]]:
    """(name, default) of each parameter of a signature's text, annotations left out."""
    inner = signature[signature.index("(") + 1 : signature.rindex(")")]
    params, depth, current = [], 0, ""
    for char in inner + ",":
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            if current.strip():
                params.append(current.strip())
            current = ""
        else:
            current += char
    found = []
    for param in params:
        name = re.split(r"[:=]", param, maxsplit=1)[0].strip().lstrip("*")
        default = param.split("=", 1)[1].strip() if "=" in param else ""
        found.append((name, default))
    return [p for p in found if p[0] not in ("self", "cls", "", "/")]


def _our_parameters(obj: Any) -> List[Tuple[str, str]]:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [
        (p.name, "" if p.default is p.empty else repr(p.default))
        for p in signature.parameters.values()
        if p.name not in ("self", "cls")
    ]


def differences() -> Dict[str, str]:
    """Qualified name -> what differs."""
    found: Dict[str, str] = {}
    for module_name, names in SEED["modules"].items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            found[module_name] = "module gone"
            continue
        for name, seed in names.items():
            qualified = f"{module_name}.{name}" if module_name != "sandai.operator_client" else name
            if not hasattr(module, name):
                found[qualified] = "gone"
                continue
            ours = getattr(module, name)
            if seed["kind"] in ("function", "async") and seed.get("signature") and inspect.isfunction(ours):
                if [n for n, _ in _parameters(seed["signature"])] != [n for n, _ in _our_parameters(ours)]:
                    found.setdefault(name, f"parameters {seed['signature']} -> {inspect.signature(ours)}")
            if seed["kind"] == "class":
                for member, info in seed["members"].items():
                    key = f"{name}.{member}"
                    if "dict" in seed["bases"] and (hasattr(dict, member) or member == "__init__"):
                        continue  # a TypedDict's members are dict's
                    if not hasattr(ours, member) and member in getattr(ours, "__dataclass_fields__", {}):
                        continue  # a dataclass field set by __init__ or __post_init__
                    if not hasattr(ours, member):
                        found.setdefault(key, "gone")
                        continue
                    ours_member = inspect.getattr_static(ours, member)
                    if isinstance(ours_member, property) and ours_member.__doc__ and "Gone" in ours_member.__doc__:
                        found.setdefault(key, "gone (raises AttributeError naming what to use)")
                        continue
                    if info["kind"] in ("method", "async") and info.get("signature"):
                        seed_names = [n for n, _ in _parameters(info["signature"])]
                        our_names = [n for n, _ in _our_parameters(getattr(ours, member))]
                        if seed_names != our_names:
                            found.setdefault(key, f"parameters {seed_names} -> {our_names}")
    for cls_name, attributes in SEED["instance_attributes"].items():
        cls = getattr(importlib.import_module("sandai.operator_client"), cls_name)
        for attribute in attributes:
            static = inspect.getattr_static(cls, attribute, None)
            if isinstance(static, property) and static.__doc__ and "Gone" in static.__doc__:
                found.setdefault(f"{cls_name}.{attribute}", "gone (raises AttributeError naming what to use)")
            elif static is None and attribute not in _instance_attributes(cls):
                found.setdefault(f"{cls_name}.{attribute}", "gone")
    return found


def _instance_attributes(cls: type) -> List[str]:
    client = cls("surface", "v1", broker_url="redis://127.0.0.1:1/0")
    try:
        return [n for n in vars(client) if not n.startswith("_")]
    finally:
        if hasattr(client, "close"):
            client.close()


def test_every_difference_from_the_seed_is_in_the_migration_guide() -> None:
    guide = GUIDE.read_text()
    named = set(re.findall(r"`([A-Za-z_][\w.]*)(?:\(\))?`", guide))
    missing = {name: what for name, what in differences().items() if name not in named}
    assert not missing, f"the migration guide does not name: {missing}"


if __name__ == "__main__":
    for name, what in sorted(differences().items()):
        print(f"{name}: {what}")
    sys.exit(0)
