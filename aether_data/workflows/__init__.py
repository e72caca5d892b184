"""Workflows: one planned sample in, one (input, target) pair out."""

from __future__ import annotations

from aether_data.config import PipelineSpec
from aether_data.workflows.base import OneStepWorkflow, Pair, PlanRow, Workflow


def make_workflow(name: str, spec: PipelineSpec) -> Workflow:
    """Instantiate a workflow by name (resources load once per shard-builder actor)."""
    if name == "param":
        from aether_data.workflows.param import ParamWorkflow

        return ParamWorkflow(spec)
    if name == "style":
        from aether_data.workflows.style import StyleWorkflow

        return StyleWorkflow(spec)
    if name == "auto":
        from aether_data.workflows.auto import AutoWorkflow

        return AutoWorkflow(spec)
    if name == "region":
        from aether_data.workflows.region import RegionWorkflow

        return RegionWorkflow(spec)
    raise ValueError(f"workflow {name!r} is not available in this version")


__all__ = ["OneStepWorkflow", "Pair", "PlanRow", "Workflow", "make_workflow"]
