"""Read Lightroom 4–6 ``.lrtemplate`` presets: a small Lua-table tokenizer and parser (no eval).

A template is one Lua assignment, ``s = { id = "…", title = "…", type = "Develop", value = {
settings = { Exposure2012 = 0.5, ToneCurvePV2012 = { 0, 0, 255, 255 }, … }, uuid = "…" },
version = 0 }``. The grammar handled here is the data subset of Lua: tables with ``key = value``,
``["key"] = value``, ``[1] = value`` and positional items separated by ``,`` or ``;``; strings in
double or single quotes with escapes (``\\n \\t \\\\ \\" \\ddd \\xhh``, ``\\z``) and long brackets
``[[…]]`` / ``[==[…]==]``; numbers (decimal, exponent, hex, unary minus); ``true``/``false``/``nil``;
``--`` line and ``--[[…]]`` block comments. Anything else is a PresetFormatError with the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aether_data.develop.settings import PresetSettings
from aether_data.presets.errors import PresetFormatError

MAX_BYTES = 4_000_000
MAX_DEPTH = 64


@dataclass(frozen=True)
class Token:
    kind: str  # name | string | number | op | eof
    value: Any
    line: int


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUM = re.compile(r"0[xX][0-9a-fA-F]+|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_LONG_OPEN = re.compile(r"\[(=*)\[")


class LuaSyntaxError(ValueError):
    """A Lua syntax problem at a given line."""

    def __init__(self, line: int, msg: str) -> None:
        self.line = line
        super().__init__(f"line {line}: {msg}")


def tokenize(text: str) -> list[Token]:
    """Split Lua source into tokens (comments and whitespace dropped)."""
    out: list[Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in " \t\r\f\v":
            i += 1
        elif text.startswith("--", i):
            m = _LONG_OPEN.match(text, i + 2)
            if m:
                close = "]" + m.group(1) + "]"
                end = text.find(close, m.end())
                if end < 0:
                    raise LuaSyntaxError(line, "unterminated block comment")
                line += text.count("\n", i, end)
                i = end + len(close)
            else:
                end = text.find("\n", i)
                i = n if end < 0 else end
        elif c in "\"'":
            value, i, line = _read_string(text, i, line)
            out.append(Token("string", value, line))
        elif c == "[" and _LONG_OPEN.match(text, i):
            m = _LONG_OPEN.match(text, i)
            assert m is not None
            close = "]" + m.group(1) + "]"
            end = text.find(close, m.end())
            if end < 0:
                raise LuaSyntaxError(line, "unterminated long string")
            body = text[m.end() : end]
            if body.startswith("\r\n"):
                body = body[2:]
            elif body.startswith("\n"):
                body = body[1:]
            out.append(Token("string", body, line))
            line += text.count("\n", i, end)
            i = end + len(close)
        elif c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            m = _NUM.match(text, i)
            assert m is not None
            raw = m.group(0)
            value = float(int(raw, 16)) if raw[:2].lower() == "0x" else float(raw)
            out.append(Token("number", value, line))
            i = m.end()
        elif c.isalpha() or c == "_":
            m = _NAME.match(text, i)
            assert m is not None
            out.append(Token("name", m.group(0), line))
            i = m.end()
        elif c in "{}[]=,;-":
            out.append(Token("op", c, line))
            i += 1
        else:
            raise LuaSyntaxError(line, f"unexpected character {c!r}")
    out.append(Token("eof", None, line))
    return out


_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "\n": "\n",
}


def _read_string(text: str, i: int, line: int) -> tuple[str, int, int]:
    quote = text[i]
    i += 1
    buf: list[str] = []
    n = len(text)
    while True:
        if i >= n:
            raise LuaSyntaxError(line, "unterminated string")
        c = text[i]
        if c == quote:
            return "".join(buf), i + 1, line
        if c == "\n":
            raise LuaSyntaxError(line, "newline inside a quoted string")
        if c != "\\":
            buf.append(c)
            i += 1
            continue
        if i + 1 >= n:
            raise LuaSyntaxError(line, "unterminated string")
        e = text[i + 1]
        if e in _ESCAPES:
            buf.append(_ESCAPES[e])
            line += e == "\n"
            i += 2
        elif e == "x":
            hexd = text[i + 2 : i + 4]
            if not re.fullmatch(r"[0-9a-fA-F]{2}", hexd):
                raise LuaSyntaxError(line, "bad \\x escape")
            buf.append(chr(int(hexd, 16)))
            i += 4
        elif e.isdigit():
            m = re.match(r"\d{1,3}", text[i + 1 :])
            assert m is not None
            code = int(m.group(0))
            if code > 255:
                raise LuaSyntaxError(line, "decimal escape too large")
            buf.append(chr(code))
            i += 1 + len(m.group(0))
        elif e == "z":
            i += 2
            while i < n and text[i] in " \t\r\n":
                line += text[i] == "\n"
                i += 1
        else:
            raise LuaSyntaxError(line, f"invalid escape \\{e}")


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.toks = tokens
        self.pos = 0

    def peek(self, k: int = 0) -> Token:
        return self.toks[min(self.pos + k, len(self.toks) - 1)]

    def take(self) -> Token:
        tok = self.toks[self.pos]
        self.pos = min(self.pos + 1, len(self.toks) - 1)
        return tok

    def expect(self, kind: str, value: Any = None) -> Token:
        tok = self.take()
        if tok.kind != kind or (value is not None and tok.value != value):
            want = repr(value) if value is not None else kind
            got = "end of file" if tok.kind == "eof" else repr(tok.value)
            raise LuaSyntaxError(tok.line, f"expected {want}, got {got}")
        return tok

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise LuaSyntaxError(self.peek().line, "tables nested too deeply")
        tok = self.take()
        if tok.kind in ("string", "number"):
            return tok.value
        if tok.kind == "op" and tok.value == "-":
            num = self.expect("number")
            return -num.value
        if tok.kind == "name":
            if tok.value == "true":
                return True
            if tok.value == "false":
                return False
            if tok.value == "nil":
                return None
            raise LuaSyntaxError(tok.line, f"unexpected name {tok.value!r} (expressions are not supported)")
        if tok.kind == "op" and tok.value == "{":
            return self.table(depth + 1)
        got = "end of file" if tok.kind == "eof" else repr(tok.value)
        raise LuaSyntaxError(tok.line, f"expected a value, got {got}")

    def table(self, depth: int) -> Any:
        keyed: dict[Any, Any] = {}
        items: list[Any] = []
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.value == "}":
                self.take()
                break
            if tok.kind == "eof":
                raise LuaSyntaxError(tok.line, "unterminated table (missing '}')")
            if tok.kind == "name" and self.peek(1).kind == "op" and self.peek(1).value == "=":
                self.take()
                self.take()
                keyed[tok.value] = self.value(depth)
            elif tok.kind == "op" and tok.value == "[":
                self.take()
                key = self.value(depth)
                self.expect("op", "]")
                self.expect("op", "=")
                if isinstance(key, float) and key.is_integer():
                    key = int(key)
                keyed[key] = self.value(depth)
            else:
                items.append(self.value(depth))
            sep = self.peek()
            if sep.kind == "op" and sep.value in (",", ";"):
                self.take()
            elif not (sep.kind == "op" and sep.value == "}"):
                got = "end of file" if sep.kind == "eof" else repr(sep.value)
                raise LuaSyntaxError(sep.line, f"expected ',' or '}}' in table, got {got}")
        if not keyed:
            return items
        for k, v in enumerate(items, 1):
            keyed.setdefault(k, v)
        return keyed


def parse_lua_table(text: str) -> Any:
    """Parse ``name = { … }`` (or a bare ``return { … }`` / ``{ … }``) → Python dict/list."""
    p = _Parser(tokenize(text))
    tok = p.peek()
    if tok.kind == "name" and tok.value == "return":
        p.take()
    elif tok.kind == "name" and p.peek(1).kind == "op" and p.peek(1).value == "=":
        p.take()
        p.take()
    value = p.value()
    end = p.peek()
    if end.kind != "eof":
        raise LuaSyntaxError(end.line, f"unexpected {end.value!r} after the table")
    return value


def _title(value: Any) -> str:
    """Lightroom's localisable strings look like "$$$/Key=Default text": keep the default text."""
    text = str(value or "")
    if text.startswith("$$$/") and "=" in text:
        text = text.split("=", 1)[1]
    return text.strip()


def read_lrtemplate(path: str | Path) -> tuple[PresetSettings, dict[str, Any]]:
    """Read a Develop .lrtemplate → (settings, metadata). Non-develop templates and broken Lua raise
    PresetFormatError with the reason."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise PresetFormatError(str(p), f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise PresetFormatError(str(p), f"file too large for a preset ({len(data)} bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    try:
        table = parse_lua_table(text)
    except LuaSyntaxError as exc:
        raise PresetFormatError(str(p), f"malformed Lua table: {exc}") from None
    if not isinstance(table, dict):
        raise PresetFormatError(str(p), "the template is not a Lua table with named fields")
    kind = table.get("type")
    value = table.get("value")
    settings_raw = value.get("settings") if isinstance(value, dict) else None
    if kind is not None and str(kind) != "Develop":
        raise PresetFormatError(
            str(p), f"not a develop preset (type = {kind!r}); only Develop templates apply"
        )
    if not isinstance(settings_raw, dict):
        raise PresetFormatError(str(p), "no value.settings table: not a develop preset")
    meta: dict[str, Any] = {}
    title = _title(table.get("title") or table.get("internalName") or p.stem)
    meta["Name"] = title or p.stem
    if isinstance(value, dict) and value.get("uuid"):
        meta["UUID"] = str(value["uuid"])
    elif table.get("id"):
        meta["UUID"] = str(table["id"])
    group = table.get("group") or table.get("folder")
    if group:
        meta["Group"] = _title(group)
    raw = {str(k): v for k, v in settings_raw.items()}
    settings = PresetSettings.from_raw(raw, meta=meta)
    return settings, dict(settings.meta)


__all__ = ["LuaSyntaxError", "parse_lua_table", "read_lrtemplate", "tokenize"]
