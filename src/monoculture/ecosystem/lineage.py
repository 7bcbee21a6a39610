"""Derivative trees: who builds on whom, directly and through chains of fine-tunes.

A family's reach is not its own repositories but what others build on them, and most of that is
indirect: a quantisation of a merge of a fine-tune of Qwen is still Qwen's reach. So links are
followed transitively, each descendant is counted once (at its shortest distance from the
family), and it is counted under the relation of its *own* link (finetune, adapter, quantized,
merge), which is the kind of work its author did. Base-model links are user-written and can form
cycles; the link that closes a cycle is dropped and counted, so that every walk terminates.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from monoculture.ecosystem.quality import Tally
from monoculture.ecosystem.snapshots import RELATIONS, UNSPECIFIED

ALL_RELATIONS = (*RELATIONS, UNSPECIFIED)


@dataclass
class Lineage:
    """A base-model graph without cycles: ``children[parent][child] = relation``."""

    children: dict[str, dict[str, str]] = field(default_factory=dict)
    parents: dict[str, dict[str, str]] = field(default_factory=dict)
    broken: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_edges(cls, edges: Iterable[tuple[str, str, str]], tally: Tally | None = None) -> Lineage:
        """Build from (child, parent, relation); self-links and cycle-closing links are dropped."""
        g = cls()
        for child, parent, relation in edges:
            if not child or not parent:
                continue
            if child == parent:
                if tally is not None:
                    tally.add("self_loop", child)
                continue
            rel = relation if relation in ALL_RELATIONS else UNSPECIFIED
            known = g.children.setdefault(parent, {})
            # a typed relation beats "unspecified" for the same pair
            if child not in known or known[child] == UNSPECIFIED:
                known[child] = rel
                g.parents.setdefault(child, {})[parent] = rel
        g._break_cycles(tally)
        return g

    def _break_cycles(self, tally: Tally | None) -> None:
        """Iterative DFS in sorted order, so the dropped link is the same on every run."""
        WHITE, GREY, BLACK = 0, 1, 2
        colour: dict[str, int] = {}
        nodes = sorted(set(self.children) | set(self.parents))
        for start in nodes:
            if colour.get(start, WHITE) != WHITE:
                continue
            colour[start] = GREY
            stack = [(start, iter(sorted(self.children.get(start, {}))))]
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    colour[node] = BLACK
                    stack.pop()
                    continue
                c = colour.get(nxt, WHITE)
                if c == GREY:  # nxt is an ancestor on the current path: node -> nxt closes a cycle
                    self.broken.append((nxt, node))
                    if tally is not None:
                        tally.add("cycle", f"{nxt} <- {node}", "link ignored")
                elif c == WHITE:
                    colour[nxt] = GREY
                    stack.append((nxt, iter(sorted(self.children.get(nxt, {})))))
        for child, parent in self.broken:
            self.children.get(parent, {}).pop(child, None)
            self.parents.get(child, {}).pop(parent, None)

    # -- queries -------------------------------------------------------------------------
    def nodes(self) -> set[str]:
        return set(self.children) | set(self.parents)

    def direct(self, node: str) -> Counter:
        """Direct derivatives of one model by relation."""
        return Counter(self.children.get(node, {}).values())

    def descendants(self, roots: Iterable[str], *, exclude: Iterable[str] = ()) -> dict[str, tuple[int, str]]:
        """Every model reachable from ``roots``: node -> (shortest depth, relation of its own link).

        Nodes in ``exclude`` (a family's own checkpoints) are walked through but not returned."""
        roots = list(dict.fromkeys(roots))
        skip = set(exclude) | set(roots)
        seen: dict[str, tuple[int, str]] = {r: (0, "") for r in roots}
        q = deque(roots)
        while q:
            node = q.popleft()
            d = seen[node][0]
            for child, rel in sorted(self.children.get(node, {}).items()):
                if child not in seen:
                    seen[child] = (d + 1, rel)
                    q.append(child)
        return {n: v for n, v in seen.items() if n not in skip}

    def depths_from(self, root: str) -> dict[str, int]:
        out = {n: d for n, (d, _) in self.descendants([root]).items()}
        out[root] = 0
        return out

    def ancestors(self, node: str) -> set[str]:
        seen: set[str] = set()
        q = deque([node])
        while q:
            for p in self.parents.get(q.popleft(), {}):
                if p not in seen:
                    seen.add(p)
                    q.append(p)
        return seen

    def roots_of(self, node: str) -> set[str]:
        anc = self.ancestors(node)
        return {a for a in anc if not self.parents.get(a)} or {node}

    def summary(self, roots: Iterable[str], *, exclude: Iterable[str] = ()) -> dict:
        """Direct and transitive derivative counts by relation, and the depth profile."""
        roots = list(roots)
        own = set(roots) | set(exclude)
        desc = self.descendants(roots, exclude=own)
        direct = {n for n in desc if any(p in own for p in self.parents.get(n, {}))}
        by_rel_t = Counter(rel for _, rel in desc.values())
        by_rel_d = Counter(desc[n][1] for n in direct)
        depths = Counter(d for d, _ in desc.values())
        return {
            "direct": len(direct),
            "transitive": len(desc),
            "direct_by_relation": {r: by_rel_d.get(r, 0) for r in ALL_RELATIONS},
            "transitive_by_relation": {r: by_rel_t.get(r, 0) for r in ALL_RELATIONS},
            "depths": dict(sorted(depths.items())),
            "max_depth": max(depths) if depths else 0,
        }


def topmost_owned_ancestors(lineage: Lineage, node: str, owner: Callable[[str], str | None]) -> set[str]:
    """The base families a derivative ultimately rests on.

    Walks up from ``node`` and keeps the owners (families) of owned ancestors that have no owned
    ancestor above them; a fine-tune of a Nemotron (itself a Llama fine-tune) rests on Llama."""
    owned = {a: f for a in lineage.ancestors(node) if (f := owner(a))}
    top = set()
    for a, fam in owned.items():
        if not any(b in owned for b in lineage.ancestors(a)):
            top.add(fam)
    return top
