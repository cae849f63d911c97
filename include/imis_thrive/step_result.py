"""The base of every step's result: a small frozen model that travels through XCom as plain JSON.

A step returns a typed result; its Airflow task returns `result.to_xcom()` and the next task rebuilds it with
`Model.from_xcom(...)`, so no task digs into nested keys by hand and a renamed field fails in one place.
Fields left empty (`None`) are left out of the JSON, which keeps XComs and run reports small.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict


class StepResult(BaseModel):
    """Counts, names and handles only: never member data, never a DataFrame."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_xcom(self) -> dict[str, Any]:
        """The JSON-ready document an Airflow task returns (and a run report stores)."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_xcom(cls, document: Mapping[str, Any]) -> Self:
        """The result again, from what `to_xcom` produced (raises if the document does not fit)."""
        return cls.model_validate(dict(document))
