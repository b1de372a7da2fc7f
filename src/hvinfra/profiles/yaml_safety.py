"""Reading YAML from profiles, --set and HVINFRA_* as untrusted text.

A few hundred bytes of nested aliases (`a: &a [x, x]`, `b: &b [*a, *a]`, …) expand to billions
of nodes when constructed: PyYAML then takes seconds to minutes and gigabytes before a
MemoryError. So before anything is constructed, the composed node graph (where an alias is the
same node object again, so composing stays cheap) is measured as it would expand, and refused
over a cap; the text itself is capped too, and recursive aliases are refused.
"""

from __future__ import annotations

from typing import Any

import yaml

from hvinfra.errors import ProfileError

MAX_BYTES = 1 << 20  # a profile is a few KiB
MAX_NODES = 100_000  # expanded scalars, sequences and mappings
# libyaml's parser when PyYAML has it: the same nodes and marks, several times faster to compose
_COMPOSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _expanded_size(root: yaml.Node, where: str) -> int:
    """The node count after alias expansion, stopping early past MAX_NODES."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ProfileError(
                f"{where}: a YAML alias refers to itself (a recursive structure)",
                "write the values out instead of the recursive anchor/alias",
            )
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > MAX_NODES:
                    break
        elif isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                total += size(key_node) + size(value_node)
                if total > MAX_NODES:
                    break
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


def compose_bounded(text: str, where: str) -> yaml.Node | None:
    """Compose `text` (syntax errors propagate as yaml.MarkedYAMLError) and refuse it when it
    is too large or its aliases would expand past MAX_NODES."""
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise ProfileError(
            f"{where}: {len(text.encode('utf-8', 'replace'))} bytes of YAML, over the"
            f" {MAX_BYTES // 1024} KiB limit for a profile",
            "a profile is a few KiB: keep only the keys you change",
        )
    try:
        node = yaml.compose(text, Loader=_COMPOSER)
        if node is not None and _expanded_size(node, where) > MAX_NODES:
            raise ProfileError(
                f"{where}: the YAML's aliases (*name) expand to more than {MAX_NODES} values"
                " (an alias bomb?); refused before reading it",
                "write the values out, or use fewer nested anchors and aliases",
            )
    except RecursionError:
        raise ProfileError(
            f"{where}: the YAML is nested too deeply", "flatten the structure"
        ) from None
    return node


def load_bounded(text: str, where: str) -> tuple[Any, yaml.Node | None]:
    """(data, node) of `text`, after compose_bounded accepted it."""
    node = compose_bounded(text, where)
    if node is None:
        return None, None
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node), node
    finally:
        loader.dispose()
