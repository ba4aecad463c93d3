"""Read R data files without R: a minimal reader of R's XDR serialization (format 2 and 3).

Handles what R data packages ship: character, integer, logical and double vectors, lists,
data frames and factors, pairlists of attributes, symbols and references; enough for the
lazy-load databases (`Rdata.rdx` + `Rdata.rdb`) and `.rda` files in Debian's r-cran-* packages.
"""

import bz2
import gzip
import lzma
import struct
import zlib

NILVALUE, GLOBALENV, EMPTYENV, BASEENV, MISSINGARG, BASENAMESPACE, REFSXP = 254, 253, 242, 241, 251, 247, 255
SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP, ALTREP = 1, 2, 9, 10, 13, 14, 16, 19, 238
NA_INT = -(2**31)


class RObject:
    """A vector with its R attributes (names, class, levels, ...)."""

    def __init__(self, kind, value, attributes):
        self.kind, self.value, self.attributes = kind, value, attributes

    def attr(self, name):
        return self.attributes.get(name)


class Reader:
    def __init__(self, data):
        self.data, self.pos, self.refs = data, 0, []

    def int(self):
        (v,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return v

    def bytes(self, n):
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def header(self):
        if self.bytes(2) != b"X\n":
            raise ValueError("not an XDR R serialization")
        version = self.int()
        self.int(), self.int()  # writer and minimal reader R versions
        if version == 3:
            self.bytes(self.int())  # native encoding name
        return self

    def attributes(self, has_attr):
        if not has_attr:
            return {}
        pairs = self.item()
        return dict(pairs.value) if isinstance(pairs, RObject) else {}

    def item(self):
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind in (NILVALUE, GLOBALENV, EMPTYENV, BASEENV, MISSINGARG, BASENAMESPACE):
            return None
        if kind == REFSXP:
            return self.refs[(flags >> 8) - 1]
        if kind == SYMSXP:
            name = self.item()
            self.refs.append(name)
            return name
        if kind == LISTSXP:
            items = []
            while kind == LISTSXP:
                attrs = self.attributes(has_attr)
                tag = self.item() if has_tag else None
                items.append((tag, self.item()))
                flags = self.int()
                kind, has_attr, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
            self.pos -= 4
            self.item()  # the terminating NILVALUE
            return RObject("list", items, {})
        if kind == CHARSXP:
            n = self.int()
            return None if n == -1 else self.bytes(n).decode("utf-8", errors="replace")
        if kind in (LGLSXP, INTSXP):
            n = self.int()
            value = list(struct.unpack_from(f">{n}i", self.data, self.pos))
            self.pos += 4 * n
        elif kind == REALSXP:
            n = self.int()
            value = list(struct.unpack_from(f">{n}d", self.data, self.pos))
            self.pos += 8 * n
        elif kind in (STRSXP, VECSXP):
            value = [self.item() for _ in range(self.int())]
        elif kind == ALTREP:
            raise ValueError("ALTREP objects are not supported")
        else:
            raise ValueError(f"unsupported R object type {kind}")
        return RObject(kind, value, self.attributes(has_attr))


def unserialize(data):
    """One object from serialized bytes (already decompressed)."""
    return Reader(data).header().item()


def decompress(data):
    """R's compression of files and lazy-load entries: gzip, bzip2, xz, or none."""
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:3] == b"BZh":
        return bz2.decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data)
    return data


def read_rda(path):
    """The named objects of an `.rda`/`.RData` file: {name: object}."""
    data = decompress(open(path, "rb").read())
    if not data.startswith(b"RDX"):
        raise ValueError(f"{path}: not an .rda file")
    pairs = Reader(data[5:]).header().item()
    return dict(pairs.value)


def named(obj):
    """A named R list as a Python dict."""
    return dict(zip(obj.attr("names").value, obj.value))


def read_lazyload(rdx_path, rdb_path):
    """The objects of a lazy-load database (`Rdata.rdx` index + `Rdata.rdb` data): {name: object}."""
    index = named(unserialize(decompress(open(rdx_path, "rb").read())))
    rdb = open(rdb_path, "rb").read()
    out = {}
    for name, entry in named(index["variables"]).items():
        offset, length = (int(x) for x in entry.value)
        blob = rdb[offset : offset + length]
        out[name] = unserialize(decompress(zlib.decompress(blob[4:])))
    return out


def column(frame, name):
    """A data frame column as a Python list, factors decoded to their labels."""
    col = named(frame)[name]
    levels = col.attr("levels")
    if levels is not None:
        return [None if v == NA_INT else levels.value[v - 1] for v in col.value]
    return col.value
