"""Regions: semantic segmentation behind one interface, and rendering per-region parameters.

``segment``: ``Segmenter`` (``segment(image) → Segmentation``), the weight-free ``ClassicalSegmenter``
(sky, skin, SLIC superpixels merged by colour) and ``TransformersSegmenter`` (a OneFormer /
Mask2Former checkpoint from a local folder). ``render``: soft region weights with boundary
perturbation and the per-region render the region workflow stores and a reader can repeat.
Layer: uses io and develop only.
"""

from aether_data.regions.render import region_weights, render_regions
from aether_data.regions.segment import (
    ClassicalSegmenter,
    Segmentation,
    Segmenter,
    TransformersSegmenter,
    make_segmenter,
)

__all__ = [
    "ClassicalSegmenter",
    "Segmentation",
    "Segmenter",
    "TransformersSegmenter",
    "make_segmenter",
    "region_weights",
    "render_regions",
]
