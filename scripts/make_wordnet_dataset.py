"""Build nanonet's WordNet noun-category text dataset from Debian's ``wordnet-base``.

Reads WordNet 3.0's ``data.noun`` (``apt-get install wordnet-base`` puts it in
/usr/share/wordnet/) and writes

    python/nanonet/datasets/data/wordnet_noun_glosses.tsv.xz
    python/nanonet/datasets/data/WORDNET_LICENSE.txt

Each synset line of data.noun is ``offset lex_filenum ss_type ... | gloss``. The label is the
lexicographer file the synset comes from (lex_filenum 3..28 -> "noun.Tops" .. "noun.time", see
WordNet's lexnames(5WN)); the text is the definition part of the gloss:

- the gloss is split on ";" and every part that starts with a double quote (an example
  sentence) is dropped; a part of the form 'definition: "example"' keeps only the definition;
- repeated (label, text) pairs are kept once; a text that occurs under two different labels is
  dropped entirely (it cannot be classified);
- rows keep data.noun's order (grouped by category; the loader shuffles).

The output is UTF-8 text compressed with xz: comment lines starting with "#" (WordNet's licence,
which must travel with every copy of the database, and a description), then one
"label<TAB>text" line per sample, the label left empty when it repeats the line above (rows are
grouped by category, so only the first row of each category names it). The xz stream is LZMA2
with settings for text (compress() below); Python's lzma module reads it. No subsampling is
needed: the file is about 1.3 MB.

Usage:  python scripts/make_wordnet_dataset.py [--wordnet-dir /usr/share/wordnet]
                                               [--copyright /usr/share/doc/wordnet-base/copyright]
        python scripts/make_wordnet_dataset.py --reencode
            rewrites the shipped file from its own rows (no wordnet-base needed): the same texts
            and labels in the current format and compression.
"""

import argparse
import collections
import lzma
import os
import sys

# lexnames(5WN): lexicographer file numbers of the noun files, in order 3..28.
NOUN_LEXNAMES = [
    "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute", "noun.body",
    "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food",
    "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity",
    "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
]
FIRST_NOUN_LEXFILE = 3

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "python", "nanonet", "datasets", "data")
OUT_DATA = "wordnet_noun_glosses.tsv.xz"
OUT_LICENSE = "WORDNET_LICENSE.txt"
MAX_BYTES = 2_000_000


def definition(gloss):
    """The definition part of a WordNet gloss, example sentences removed."""
    kept = []
    for part in gloss.split(";"):
        part = part.strip()
        if not part or part.startswith('"'):
            continue
        cut = part.find(': "')
        if cut >= 0:
            part = part[:cut].strip()
        if part:
            kept.append(part)
    return "; ".join(kept)


def read_data_noun(path):
    """Yield (label, text) for every synset in data.noun, in file order."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):  # licence header lines
                continue
            head, sep, gloss = line.partition(" | ")
            if not sep:
                raise ValueError(f"{path}: no gloss separator ' | ' in line {line[:60]!r}")
            lex_filenum = int(head.split()[1])
            if not FIRST_NOUN_LEXFILE <= lex_filenum < FIRST_NOUN_LEXFILE + len(NOUN_LEXNAMES):
                raise ValueError(f"{path}: lex_filenum {lex_filenum} is not a noun file")
            text = definition(gloss)
            if text:
                yield NOUN_LEXNAMES[lex_filenum - FIRST_NOUN_LEXFILE], text


def clean(rows):
    """Drop repeated (label, text) pairs and texts that carry more than one label."""
    labels_of = collections.defaultdict(set)
    for label, text in rows:
        labels_of[text].add(label)
    seen = set()
    out = []
    for label, text in rows:
        if len(labels_of[text]) > 1 or text in seen:
            continue
        seen.add(text)
        out.append((label, text))
    return out


FORMAT_LINE = ("Format: comment lines start with '#'; then one 'label<TAB>text' line per sample; "
               "an empty label repeats the one above.")


def body_text(header, rows):
    """The uncompressed file: '# ' header lines, then the rows (a repeated label left empty)."""
    out = ["".join(f"# {h}".rstrip() + "\n" for h in header)]
    previous = None
    for label, text in rows:
        out.append(f"{'' if label == previous else label}\t{text}\n")
        previous = label
    return "".join(out)


def compress(body):
    """xz (LZMA2) tuned for text: no literal position bits (lp = pb = 0; UTF-8 text has no
    2- or 4-byte structure), four literal context bits (lc = 4), the longest match length and a
    dictionary just over the 6.7 MB input (the default 64 MiB only costs memory)."""
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "lc": 4, "lp": 0,
                "pb": 0, "nice_len": 273, "dict_size": 8 << 20}]
    return lzma.compress(body.encode("utf-8"), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                         filters=filters)


def read_shipped(path):
    """(header lines without '# ', [(label, text)]) of a shipped file, either format."""
    with open(path, "rb") as f:
        text = lzma.decompress(f.read()).decode("utf-8")
    header, rows, label = [], [], None
    for line in text.splitlines():
        if line.startswith("#"):
            header.append(line[2:] if line.startswith("# ") else line[1:])
            continue
        if not line:
            continue
        name, sep, gloss = line.partition("\t")
        if not sep or not (name or label):
            raise ValueError(f"{path}: line is not 'label<TAB>text': {line[:60]!r}")
        label = name or label
        rows.append((label, gloss))
    return header, rows


def licence_text(copyright_path):
    """WordNet's licence paragraph from the Debian copyright file, de-indented."""
    with open(copyright_path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("License: WordNet"))
    body = []
    for line in lines[start + 1:]:
        if not line.startswith(" "):
            break
        body.append("" if line.strip() == "." else line[1:])
    return "\n".join(body).strip() + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wordnet-dir", default="/usr/share/wordnet")
    p.add_argument("--copyright", default="/usr/share/doc/wordnet-base/copyright")
    p.add_argument("--out-dir", default=OUT_DIR)
    p.add_argument("--reencode", action="store_true",
                   help="rewrite the shipped file from its own rows (format and compression only)")
    args = p.parse_args(argv)

    if args.reencode:
        path = os.path.join(args.out_dir, OUT_DATA)
        header, rows = read_shipped(path)
        header = [FORMAT_LINE if h.startswith("Format:") else h for h in header]
        blob = compress(body_text(header, rows))
        before = os.path.getsize(path)
        with open(path, "wb") as f:
            f.write(blob)
        print(f"{len(rows)} samples re-encoded: {before} -> {len(blob)} bytes ({path})")
        return

    rows = clean(list(read_data_noun(os.path.join(args.wordnet_dir, "data.noun"))))
    licence = licence_text(args.copyright)
    header = [
        "WordNet 3.0 noun glosses labelled with their lexicographer file (lex_filenum).",
        "Made by nanonet's scripts/make_wordnet_dataset.py from Debian's wordnet-base data.noun;",
        "example sentences removed, duplicates and multiply-labelled glosses dropped.",
        FORMAT_LINE,
        "",
        "Source: https://wordnet.princeton.edu/  Licence (WordNet 3.0 licence):",
        "",
    ] + licence.splitlines()
    blob = compress(body_text(header, rows))
    if len(blob) > MAX_BYTES:
        sys.exit(f"compressed file is {len(blob)} bytes > {MAX_BYTES}; subsample before shipping")

    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, OUT_DATA), "wb") as f:
        f.write(blob)
    with open(os.path.join(args.out_dir, OUT_LICENSE), "w", encoding="utf-8") as f:
        f.write("The file wordnet_noun_glosses.tsv.xz in this folder is derived from WordNet 3.0\n"
                "(Princeton University, https://wordnet.princeton.edu/) and is distributed under\n"
                "the WordNet 3.0 licence below.\n\n")
        f.write(licence)

    counts = collections.Counter(label for label, _ in rows)
    print(f"{len(rows)} samples, {len(counts)} classes, {len(blob)} bytes -> {args.out_dir}")
    for name in NOUN_LEXNAMES:
        print(f"  {name:20s} {counts[name]}")


if __name__ == "__main__":
    main()
