"""Class ids of an export -> class names -> the project's class ids: the one place an export's ids are mapped.

The project's classes are the base data.yaml's names in order. An export that names its classes is matched by
name, never by position; one that does not (a bare ``images/`` + ``labels/`` folder) keeps its ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from yolo_retrain.errors import InvalidInput
from yolo_retrain.labels import format_labels, parse_labels


@dataclass(frozen=True)
class ClassMapping:
    """The project class id of each of an export's class ids (``project_ids`` None: the export has no names)."""

    export_names: list[str] | None
    project_names: list[str]
    project_ids: tuple[int, ...] | None

    @classmethod
    def between(
        cls, export_names: list[str] | None, names_source: str | None, project_names: list[str], project_source: str
    ) -> ClassMapping:
        """Match ``export_names`` to ``project_names`` by name; InvalidInput naming any name the project lacks."""
        if export_names is None:
            return cls(None, list(project_names), None)
        index = {name: i for i, name in enumerate(project_names)}
        unknown = list(dict.fromkeys(n for n in export_names if n not in index))
        if unknown:
            raise InvalidInput(
                f"{names_source}: class {_quoted(unknown)} {'is' if len(unknown) == 1 else 'are'} not among the "
                f"project's classes {_quoted(project_names)} ({project_source}); nothing was imported. Rename "
                "the class in the labelling tool, or add it to the base data.yaml (then retrain from scratch)"
            )
        return cls(list(export_names), list(project_names), tuple(index[n] for n in export_names))

    @property
    def identity(self) -> bool:
        """True when every id stays as it is."""
        return self.project_ids is None or self.project_ids == tuple(range(len(self.project_ids)))

    def describe(self) -> list[str]:
        """One line per export class: ``export id 'name' -> project id``."""
        if self.export_names is None or self.project_ids is None:
            return []
        return [
            f"{i} {name!r} -> {j}" + ("" if i == j else " (renumbered)")
            for i, (name, j) in enumerate(zip(self.export_names, self.project_ids))
        ]

    def apply(self, text: str, source: str) -> str:
        """Label text with the export's ids -> the same boxes with project ids (checked against the export's
        classes: an id the export does not name is refused as ``source:line``)."""
        if self.export_names is None or self.project_ids is None:
            return text
        ids = self.project_ids
        boxes = parse_labels(text, source, len(self.export_names))
        return format_labels([(ids[c], cx, cy, w, h) for c, cx, cy, w, h in boxes])


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)
