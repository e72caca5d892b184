"""Read and write Lightroom / Camera Raw XMP presets (``crs:`` settings), safely.

Parsing goes through ``defusedxml`` so entity expansion (billion laughs), external entities (XXE)
and DTD tricks are refused with a clear reason instead of being expanded. Both spellings Lightroom
uses are read: attributes on ``rdf:Description`` (``crs:Exposure2012="+0.50"``) and child
elements (``<crs:Exposure2012>+0.50</crs:Exposure2012>``); curves are ``rdf:Seq`` lists of
"x, y" points, names ``rdf:Alt`` language alternatives, nested structures (``crs:Look``) are kept
as dicts and reported as unsupported.

Writing produces Lightroom Classic's export layout: scalars as attributes (signed sliders with a
"+"), Name/Group/ShortName/SortName/Description as ``rdf:Alt``, curves as ``rdf:Seq``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden

from aether_data.develop.corrections import LOCAL_CONTAINERS
from aether_data.develop.settings import KEYS, META_KEYS, PresetSettings, format_number
from aether_data.io.atomic import atomic_write_text
from aether_data.presets.errors import PresetFormatError

NS_CRS = "http://ns.adobe.com/camera-raw-settings/1.0/"
NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS_X = "adobe:ns:meta/"
NS_XML = "http://www.w3.org/XML/1998/namespace"
MAX_BYTES = 4_000_000
"""Presets are a few kB; anything bigger is refused before parsing."""

ALT_KEYS: tuple[str, ...] = ("Name", "ShortName", "SortName", "Group", "Description")
"""Metadata written as ``rdf:Alt`` language alternatives."""


def _local(tag: str, ns: str) -> str | None:
    prefix = "{" + ns + "}"
    return tag[len(prefix) :] if tag.startswith(prefix) else None


def _is_resource(el: ET.Element) -> bool:
    """``rdf:parseType="Resource"``, crs child elements or crs attributes (``<crs:CorrectionRangeMask
    crs:Type="2" …/>``): the element itself is a structure."""
    return (
        el.get(f"{{{NS_RDF}}}parseType") == "Resource"
        or any(_local(c.tag, NS_CRS) for c in el)
        or any(_local(k, NS_CRS) for k in el.attrib)
    )


def _element_value(el: ET.Element) -> Any:
    """Value of a crs child element: text, Seq/Bag → list, Alt → x-default text, Description → dict
    (also a ``rdf:parseType="Resource"`` element, whose crs children are the fields)."""
    if _is_resource(el):
        return _description(el)
    for child in el:
        kind = _local(child.tag, NS_RDF)
        if kind in ("Seq", "Bag"):
            return [_li_value(li) for li in child if _local(li.tag, NS_RDF) == "li"]
        if kind == "Alt":
            items = [li for li in child if _local(li.tag, NS_RDF) == "li"]
            for li in items:
                if li.get(f"{{{NS_XML}}}lang") == "x-default":
                    return (li.text or "").strip()
            return (items[0].text or "").strip() if items else ""
        if kind == "Description":
            return _description(child)
    return (el.text or "").strip()


def _li_value(li: ET.Element) -> Any:
    if _is_resource(li):
        return _description(li)
    if len(li):
        desc = [c for c in li if _local(c.tag, NS_RDF) == "Description"]
        if desc:
            return _description(desc[0])
    if any(_local(k, NS_CRS) for k in li.attrib):
        return {_local(k, NS_CRS): v for k, v in li.attrib.items() if _local(k, NS_CRS)}
    return (li.text or "").strip()


def _description(desc: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in desc.attrib.items():
        name = _local(k, NS_CRS)
        if name:
            out[name] = v
    for child in desc:
        name = _local(child.tag, NS_CRS)
        if name:
            out[name] = _element_value(child)
    return out


def parse_xmp_bytes(data: bytes, file: str = "<bytes>") -> dict[str, Any]:
    """Raw ``crs:`` key → value (strings / lists / dicts) of the first Description with crs data."""
    if len(data) > MAX_BYTES:
        raise PresetFormatError(file, f"file too large for a preset ({len(data)} bytes > {MAX_BYTES})")
    try:
        root = DET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except EntitiesForbidden as exc:
        if getattr(exc, "sysid", None) or getattr(exc, "pubid", None):
            reason = (
                f"external XML entity {exc.name!r} refused (XXE: it points at {exc.sysid or exc.pubid!r})"
            )
        else:
            reason = f"XML entity declaration {exc.name!r} refused (entity expansion / billion laughs)"
        raise PresetFormatError(file, reason) from None
    except ExternalReferenceForbidden:
        raise PresetFormatError(file, "external XML references are refused (XXE)") from None
    except DTDForbidden:
        raise PresetFormatError(file, "XML DTDs are refused") from None
    except DefusedXmlException as exc:
        raise PresetFormatError(file, f"unsafe XML refused: {type(exc).__name__}") from None
    except ET.ParseError as exc:
        raise PresetFormatError(file, f"malformed XML: {exc}") from None
    found: dict[str, Any] | None = None
    for desc in root.iter(f"{{{NS_RDF}}}Description"):
        if any(_local(k, NS_CRS) for k in desc.attrib) or any(_local(c.tag, NS_CRS) for c in desc):
            found = _description(desc)
            break
    if found is None:
        raise PresetFormatError(file, "no camera-raw settings (crs:) found: not a Lightroom/ACR preset")
    return found


def read_xmp(path: str | Path) -> tuple[PresetSettings, dict[str, Any]]:
    """Read an .xmp preset → (settings, metadata). Raises PresetFormatError for unusable files."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise PresetFormatError(str(p), f"cannot read: {exc.strerror or exc}") from None
    raw = parse_xmp_bytes(data, str(p))
    settings = PresetSettings.from_raw(raw)
    return settings, dict(settings.meta)


# ==================================================================================================
# writing
# ==================================================================================================
def _scalar_text(key: str, value: Any) -> str:
    spec = KEYS.get(key)
    if isinstance(value, bool):
        return "True" if value else "False"
    if spec is not None and spec.kind in ("float", "int"):
        return format_number(spec, float(value))
    return str(value)


def _alt(key: str, text: str, indent: str) -> str:
    return (
        f"{indent}<crs:{key}>\n{indent} <rdf:Alt>\n"
        f'{indent}  <rdf:li xml:lang="x-default">{escape(str(text))}</rdf:li>\n'
        f"{indent} </rdf:Alt>\n{indent}</crs:{key}>\n"
    )


def _seq(key: str, items: list[str], indent: str) -> str:
    lis = "".join(f"{indent}  <rdf:li>{escape(i)}</rdf:li>\n" for i in items)
    return f"{indent}<crs:{key}>\n{indent} <rdf:Seq>\n{lis}{indent} </rdf:Seq>\n{indent}</crs:{key}>\n"


def _structure(value: Any, indent: str) -> str:
    """A nested value (dict → rdf:Description with scalar attributes and nested children, list →
    rdf:Seq) as XMP text; the inverse of ``_element_value`` for the local-correction containers."""
    if isinstance(value, dict):
        attrs = [(k, v) for k, v in value.items() if not isinstance(v, (dict, list))]
        kids = [(k, v) for k, v in value.items() if isinstance(v, (dict, list))]
        attr_text = "".join(f"\n{indent}   crs:{k}={quoteattr(_scalar_text(k, v))}" for k, v in attrs)
        if not kids:
            return f"{indent}<rdf:Description{attr_text}/>\n"
        body = "".join(_nested(k, v, indent + " ") for k, v in kids)
        return f"{indent}<rdf:Description{attr_text}>\n{body}{indent}</rdf:Description>\n"
    items = []
    for item in value:
        if isinstance(item, (dict, list)):
            items.append(f"{indent} <rdf:li>\n{_structure(item, indent + '  ')}{indent} </rdf:li>\n")
        else:
            items.append(f"{indent} <rdf:li>{escape(_scalar_text('', item))}</rdf:li>\n")
    return f"{indent}<rdf:Seq>\n{''.join(items)}{indent}</rdf:Seq>\n"


def _nested(key: str, value: Any, indent: str) -> str:
    return f"{indent}<crs:{key}>\n{_structure(value, indent + ' ')}{indent}</crs:{key}>\n"


def to_xmp(
    settings: PresetSettings, name: str | None = None, group: str | None = None, uuid: str | None = None
) -> str:
    """Serialise settings (rendered keys, metadata and scalar unsupported keys) as a preset XMP.

    Local corrections (gradient, radial, mask-group containers) are written back as nested
    ``rdf:Seq`` / ``rdf:Description`` structures; other nested unsupported structures (crs:Look,
    brushes) are not written back: they were reported.
    """
    meta = dict(settings.meta)
    if name is not None:
        meta["Name"] = name
    if group is not None:
        meta["Group"] = group
    if uuid is not None:
        meta["UUID"] = uuid
    meta.setdefault("PresetType", "Normal")
    meta.setdefault("Version", "15.0")
    meta.setdefault("ProcessVersion", "11.0")
    meta.setdefault("HasSettings", "True")
    attrs: list[tuple[str, str]] = []
    children: list[str] = []
    ind = "   "
    for key in sorted(meta):
        value = meta[key]
        if key in ALT_KEYS:
            children.append(_alt(key, value, ind))
        elif isinstance(value, (str, int, float, bool)):
            attrs.append((key, _scalar_text(key, value)))
    for key in sorted(settings):
        value = settings[key]
        if KEYS[key].kind == "curve":
            children.append(_seq(key, [f"{int(x)}, {int(y)}" for x, y in value], ind))
        else:
            attrs.append((key, _scalar_text(key, value)))
    for key in sorted(settings.unsupported):
        value = settings.unsupported[key]
        if isinstance(value, (str, int, float, bool)):
            attrs.append((key, _scalar_text(key, value)))
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            children.append(_seq(key, list(value), ind))
        elif key in LOCAL_CONTAINERS and isinstance(value, list):
            children.append(_nested(key, value, ind))
    attr_text = "".join(f"\n   crs:{k}={quoteattr(v)}" for k, v in attrs)
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000 1.000000, 0000/00/00-00:00:00        ">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        f'    xmlns:crs="{NS_CRS}"{attr_text}>\n'
        + "".join(children)
        + "  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n"
    )


def write_xmp(
    path: str | Path, settings: PresetSettings, name: str | None = None, group: str | None = None
) -> None:
    """Write a preset XMP file (UTF-8)."""
    atomic_write_text(path, to_xmp(settings, name=name, group=group))


__all__ = ["META_KEYS", "parse_xmp_bytes", "read_xmp", "to_xmp", "write_xmp"]
