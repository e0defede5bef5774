"""The error every input check raises: each problem is a field path and a rule, reported under its file."""

from __future__ import annotations


class ScenarioError(Exception):
    """A file broke a rule; ``problems`` is a list of (field path, rule) pairs.

    ``source`` is the file that was asked for; ``sources`` gives, for each problem, the file it is in
    (a parent of an ``extends`` chain, say), by default ``source`` for all of them.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]], sources: list[str] | None = None):
        self.source = source
        self.problems = problems
        self.sources = list(sources) if sources is not None else [source] * len(problems)
        super().__init__("\n".join(self.lines()))

    def __reduce__(self):  # so that it crosses process boundaries (worker pools) intact
        return (type(self), (self.source, self.problems, self.sources))

    def lines(self) -> list[str]:
        """Every problem as one ``FILE: field.path: rule`` line (``FILE: rule`` for the file as a whole)."""
        return [f"{src}: {path}: {rule}" if path else f"{src}: {rule}" for src, (path, rule) in zip(self.sources, self.problems)]
