#!/usr/bin/env python3
"""Copies the `component-type:*` custom section (the world's encoded WIT, as
wit-bindgen writes it) from one WebAssembly file into a core module, so the
host can encode the component from it: what `wasm-tools component embed`
does, without needing wasm-tools. Custom sections may appear anywhere in a
module, so appending one is enough.

usage: embed-wit.py SOURCE_WITH_SECTION MODULE_IN MODULE_OUT
"""
import sys


def leb(data, pos):
    """An unsigned LEB128 at `pos`: (value, position after it)."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise ValueError("truncated or oversized LEB128")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def sections(data):
    """(id, name or None, whole section bytes) for each section of a module."""
    if data[:4] != b"\0asm":
        raise ValueError("not a WebAssembly module")
    pos = 8
    while pos < len(data):
        start = pos
        section_id = data[pos]
        size, body = leb(data, pos + 1)
        end = body + size
        if end > len(data):
            raise ValueError("truncated section")
        name = None
        if section_id == 0:
            length, name_at = leb(data, body)
            name = data[name_at : name_at + length].decode("utf-8", "replace")
        yield section_id, name, data[start:end]
        pos = end


def main():
    source, module_in, module_out = sys.argv[1:4]
    with open(source, "rb") as f:
        found = [s for i, n, s in sections(f.read()) if i == 0 and n.startswith("component-type")]
    if len(found) != 1:
        sys.exit(f"error: {source} has {len(found)} component-type sections, expected 1")
    with open(module_in, "rb") as f:
        module = f.read()
    if any(i == 0 and n.startswith("component-type") for i, n, _ in sections(module)):
        sys.exit(f"error: {module_in} already has a component-type section")
    with open(module_out, "wb") as f:
        f.write(module + found[0])


if __name__ == "__main__":
    main()
