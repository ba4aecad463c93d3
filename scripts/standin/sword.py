"""Plain text of a SWORD zText Bible module (e.g. Debian's sword-text-web), without libsword.

Layout per testament (`ot`, `nt`): `.bzs` holds 12-byte little-endian block records (offset,
compressed size, raw size) into `.bzz`, whose blocks are zlib streams; `.bzv` holds 10-byte
verse records (block u32, offset u32, size u16) into the decompressed blocks. Verse text is
OSIS XML: notes are dropped, other tags stripped.
"""

import re
import struct
import zlib
from pathlib import Path

NOTE = re.compile(r"<note\b.*?</note>", re.S)
TAG = re.compile(r"<[^>]+>")
SPACE = re.compile(r"[ \t]+")


def testament(base):
    bzs, bzv, bzz = (Path(f"{base}.{ext}").read_bytes() for ext in ("bzs", "bzv", "bzz"))
    blocks = {}
    for i in range(len(bzs) // 12):
        offset, size, _raw = struct.unpack_from("<III", bzs, 12 * i)
        blocks[i] = (offset, size)
    cache = {}
    verses = []
    for i in range(len(bzv) // 10):
        block, offset, size = struct.unpack_from("<IIH", bzv, 10 * i)
        if size == 0 or block not in blocks:
            continue
        if block not in cache:
            start, length = blocks[block]
            cache = {block: zlib.decompress(bzz[start : start + length])}
        raw = cache[block][offset : offset + size].decode("utf-8", errors="replace")
        text = SPACE.sub(" ", TAG.sub("", NOTE.sub(" ", raw))).strip()
        if text:
            verses.append(text)
    return verses


def module_text(module_dir):
    """All verses of the module, Old then New Testament, one per line."""
    lines = []
    for part in ("ot", "nt"):
        base = Path(module_dir) / part
        if Path(f"{base}.bzs").exists():
            lines += testament(base)
    return "\n".join(lines) + "\n"
