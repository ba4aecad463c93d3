"""A corpus with long-range repetition, made from a PG19-layout corpus (issue 13: a setting
where the memory should matter on text).

Each book is cut into consecutive passages of about --chars characters (at whitespace), and every
two passages A, B become one document "A B A": the second A repeats text seen 2 passages earlier,
farther back than a segment of local attention reaches when the passages are longer than a
segment. Only a model that carries the text across segments (the memory) can predict the second
A better than the first. Same splits and ids as the source, one document per id.

With --gap-chars the passage B between the two A's has its own length: a short A and a long B
make a repetition that is short enough for the memory to hold and too far back for local
attention (datasets/standin-repeats-short.toml: --chars 350 --gap-chars 800, about 95 tokens
repeated about 215 tokens on).

  python3 scripts/repeat-corpus.py data/standin-books data/standin-repeats [--chars 1000] [--gap-chars N]
"""
import argparse
import csv
import os
import shutil
import sys
from pathlib import Path


def passages(text, lengths):
    """Consecutive pieces of about `lengths[0]`, `lengths[1]`, `lengths[0]`, ... characters, each
    cut at whitespace."""
    text = " ".join(text.split())
    start, i = 0, 0
    while start < len(text):
        end = text.find(" ", start + lengths[i % len(lengths)])
        end = len(text) if end < 0 else end
        yield text[start:end]
        start, i = end + 1, i + 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="a PG19-layout corpus: metadata.csv and train|validation|test/<id>.txt")
    p.add_argument("dst", type=Path, help="the new corpus (must not exist)")
    p.add_argument("--chars", type=int, default=1000, help="characters per passage A (default 1000)")
    p.add_argument("--gap-chars", type=int, help="characters of the passage B between the A's (default: --chars)")
    args = p.parse_args()
    if not (args.src / "metadata.csv").is_file():
        sys.exit(f"error: {args.src} has no metadata.csv: give a PG19-layout corpus (scripts/fetch-standin.sh books)")
    if args.dst.exists():
        sys.exit(f"error: {args.dst} exists; remove it or choose another folder")
    gap = args.chars if args.gap_chars is None else args.gap_chars
    if args.chars < 1 or gap < 1:
        sys.exit("error: --chars and --gap-chars must be at least 1")
    tmp = args.dst.with_name(args.dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted run
    rows, docs = [], 0
    titles = {r[0]: r for r in csv.reader(open(args.src / "metadata.csv", newline="", encoding="utf-8")) if r}
    for split in ["train", "validation", "test"]:
        (tmp / split).mkdir(parents=True, exist_ok=True)
        for book in sorted((args.src / split).glob("*.txt")):
            pieces = list(passages(book.read_text(encoding="utf-8"), [args.chars, gap]))
            for i in range(0, len(pieces) - 1, 2):
                doc_id = f"{book.stem}{i // 2:05d}"
                a, b = pieces[i], pieces[i + 1]
                (tmp / split / f"{doc_id}.txt").write_text(f"{a}\n\n{b}\n\n{a}\n", encoding="utf-8")
                meta = titles.get(book.stem, [book.stem, book.stem, "", ""])
                rows.append([doc_id, f"{meta[1]} (passages {i}-{i + 1}, A B A)", *meta[2:4]])
                docs += 1
    with open(tmp / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    os.replace(tmp, args.dst)
    print(f"{args.dst}: {docs} documents (A B A, A of about {args.chars} characters, B of about {gap})")


if __name__ == "__main__":
    main()
