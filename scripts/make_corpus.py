"""A synthetic N-pair corpus from Multi30k for measuring data preparation at scale (issue 37).

    python scripts/make_corpus.py 1000000 OUT_DIR    # OUT_DIR/pairs.train.tsv, pairs.valid.tsv, pairs.test.tsv

Pair k of the training file joins two Multi30k training pairs, ``k mod 29,000`` and one drawn
with a seeded generator, source with source and target with target (~26 words a side, as WMT
sentences), so the text is real and a million pairs are mostly distinct. The validation and test
files are Multi30k's val and test_2016_flickr as they are. Train on it with
``data=tsv data.src=de data.tgt=en data.files='OUT_DIR/pairs.*.tsv'``. The corpus root comes from
``$SEQ2SEQ_DATA_DIR`` (or ``--corpora``).
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
from pathlib import Path


def read(folder: Path, split: str, lang: str) -> list[str]:
    with gzip.open(folder / f"{split}.{lang}.gz", "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n").replace("\t", " ") for line in handle]


def write_pairs(path: Path, src: list[str], tgt: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(f"{s}\t{t}\n" for s, t in zip(src, tgt))


def make_corpus(pairs: int, out: Path, corpora: Path, src: str = "de", tgt: str = "en", seed: int = 1) -> Path:
    """Write ``out/pairs.{train,valid,test}.tsv``; returns ``out``."""
    folder = corpora / "multi30k"
    base_src, base_tgt = read(folder, "train", src), read(folder, "train", tgt)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    n = len(base_src)
    with open(out / "pairs.train.tsv", "w", encoding="utf-8") as handle:
        for start in range(0, pairs, 100_000):
            lines = []
            for k in range(start, min(pairs, start + 100_000)):
                i, j = k % n, rng.randrange(n)
                lines.append(f"{base_src[i]} {base_src[j]}\t{base_tgt[i]} {base_tgt[j]}\n")
            handle.writelines(lines)
    write_pairs(out / "pairs.valid.tsv", read(folder, "val", src), read(folder, "val", tgt))
    write_pairs(out / "pairs.test.tsv", read(folder, "test_2016_flickr", src), read(folder, "test_2016_flickr", tgt))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", type=int, help="training pairs to write")
    parser.add_argument("out", type=Path, help="the folder to write pairs.{train,valid,test}.tsv into")
    parser.add_argument("--corpora", type=Path, default=os.environ.get("SEQ2SEQ_DATA_DIR"), help="the corpus root")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.corpora is None:
        parser.error("set SEQ2SEQ_DATA_DIR (or --corpora) to the folder that holds multi30k/")
    out = make_corpus(args.pairs, args.out, args.corpora, seed=args.seed)
    print(f"{args.pairs:,} training pairs -> {out / 'pairs.train.tsv'}")


if __name__ == "__main__":
    main()
