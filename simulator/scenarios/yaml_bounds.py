"""Limits on the YAML of a scenario file, checked on the composed node graph before any value is
built from it (the same with libyaml's loader: the check reads nodes, not parser events).

* **Aliases.** Anchors and aliases let nine short lines stand for 10^9 strings (the "billion
  laughs"). The loader shares the nodes, so building the value is cheap; what expands it is
  whatever walks it afterwards. Those walks are bounded where they happen (a task ``result`` is
  counted up to ``MAX_RESULT_VALUES`` and a self-referencing one refused; error messages render
  values with :func:`simulator.jsonsafe.short_repr`, which cuts while it renders), and on top of
  that a file may hold at most :data:`MAX_ALIASES` alias references: honest scenario files use a
  handful.
* **Numbers.** PyYAML builds integers with ``int()``, which raises a bare ``ValueError`` past
  4,300 digits (and is slow before that); a number longer than :data:`MAX_NUMBER_CHARS`
  characters is refused as invalid YAML, with its line.
"""

from __future__ import annotations

import yaml

MAX_ALIASES = 100
MAX_NUMBER_CHARS = 64
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


class YamlLimitError(yaml.MarkedYAMLError):
    """A limit of this module was exceeded; the mark is the offending node."""


def check_bounds(root: yaml.Node | None) -> yaml.Node | None:
    """``root`` unchanged, or :class:`YamlLimitError` (a YAML error that carries its line)."""
    if root is None:
        return root
    seen: set[int] = set()
    aliases = 0
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) in seen:  # reached again: an alias (or a cycle through one)
            aliases += 1
            if aliases > MAX_ALIASES:
                raise YamlLimitError(problem=f"more than {MAX_ALIASES} aliases (*name); scenario files "
                                             "need a few at most: write the values out",
                                     problem_mark=node.start_mark)
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
                raise YamlLimitError(problem=f"a number of {len(node.value):,} characters; "
                                             f"at most {MAX_NUMBER_CHARS}",
                                     problem_mark=node.start_mark)
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                pending.append(key)
                pending.append(value)
    return root
