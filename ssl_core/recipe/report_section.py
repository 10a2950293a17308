"""The recipe's `report` section: title, baseline, the paper's values and claims to judge.

It lives with the recipe schema (not with the report) so a malformed section fails at
validation, with its YAML line, before anything runs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Claim", "ReportSettings"]


class Claim(BaseModel):
    """A claim of the paper, stated as a comparison the report can judge."""

    model_config = ConfigDict(extra="forbid")
    claim: str = Field(description="the claim, in words")
    model: str
    baseline: str | None = Field(None, description="defaults to report.baseline")
    probe: str
    k: int | None = Field(None, ge=1, description="top-K; defaults to the first probe_settings.top_k")
    direction: Literal["higher", "lower"]


class ReportSettings(BaseModel):
    """The recipe's `report` section.

    Names of models and probes are not required to exist here: `--set probes.x=null` or a
    profile may drop one, and a finished run must still get its report. A claim about
    something not measured is "cannot decide", and the report says why."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = None
    baseline: str | None = Field(None, description="model the others are compared with")
    paper: dict[str, dict[str, dict[str, float]]] = Field(
        default_factory=dict, description="{model: {probe or evaluation: {top10 or metric: value}}}")
    claims: list[Claim] = Field(default_factory=list,
                                description="judged against the intervals")

    @model_validator(mode="after")
    def _claims_have_baselines(self) -> ReportSettings:
        for i, c in enumerate(self.claims):
            if c.baseline is None and self.baseline is None:
                raise ValueError(f"claims[{i}] has no baseline: set report.baseline or the "
                                 "claim's own baseline")
        return self
