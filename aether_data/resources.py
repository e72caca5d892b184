"""Where the project's data files are, in a checkout and in an installed wheel alike.

Why: pipeline specs, the preset library, the JSON schemas and the bundled photos are read at run
time. Paths computed from ``__file__`` up to the repository root break as soon as the package is
installed non-editable; ``importlib.resources`` finds them inside the package wherever it lives.
The repository keeps its top-level ``pipelines/``, ``presets/`` and ``manifests/`` folders (the
design card's layout); ``aether_data/data/`` links to them so the wheel carries the same files.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["data_path", "package_root"]


def package_root() -> Path:
    """The installed ``aether_data`` package directory."""
    return Path(str(files("aether_data")))


def data_path(*parts: str) -> Path:
    """A file or folder under the package's ``data/`` (``data_path("pipelines", "auto.yaml")``)."""
    return package_root().joinpath("data", *parts)


def display_uri(uri: str) -> str:
    """Bundled photos as ``aether://`` URIs, so records, indexes and manifests neither leak local
    paths nor depend on where the checkout lives; other URIs unchanged."""
    try:
        rel = Path(uri).resolve().relative_to(package_root().resolve())
        return f"aether://{rel.as_posix()}"
    except ValueError:
        return uri
