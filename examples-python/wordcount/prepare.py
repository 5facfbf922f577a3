"""Generate the word-count input: CSV files with one column `line` of pseudo-random English-like text.

Words follow a Zipf-like distribution over a fixed vocabulary (common English words first, then
generated ones) and come with mixed case and punctuation for the program to normalise. The output is
deterministic for a given seed and size, and is kept (skipped next time) unless --force is given or the
parameters change.

    python prepare.py [--mb 5] [--files 4] [--seed 42] [--data DIR] [--force]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from _support import folder_size, prepare_once  # noqa: E402

# The most frequent words. "none", "null", "true", "false" and "nan" are ordinary words here: a CSV
# reader that turns them into missing values or booleans would miscount them.
COMMON_TEXT = """the of and to a in is it you that he was for on are with as his they be at one have this
from or had by not but what some we can out other were all there when up use your how said an each she
which do their time if will way about many then them write would like so these her long make thing see
him two has look more day could go come did number sound no most people my over know water than call
first who may down side been now find none null true false nan"""
COMMON = COMMON_TEXT.split()
SYLLABLE_TEXT = """ba be bi bo bu da de di do du fa fe fi fo ka ke ki ko ku la le li lo lu ma me mi mo mu
na ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu va ve vi vo wa we wi
zo ar er ir or ur an en in on un al el il ol st tr pr gr ch sh th"""
SYLLABLES = SYLLABLE_TEXT.split()
PUNCTUATION = ["", ",", ";", ":", ".", "!", "?", "'s", "-"]
PUNCTUATION_P = [0.80, 0.08, 0.01, 0.01, 0.06, 0.01, 0.01, 0.01, 0.01]


def vocabulary(rng: np.random.Generator, size: int) -> np.ndarray:
    """COMMON followed by distinct generated words of 2-4 syllables, `size` words in all."""
    words = dict.fromkeys(COMMON)
    while len(words) < size:
        words.setdefault("".join(rng.choice(SYLLABLES, rng.integers(2, 5))))
    return np.array(list(words)[:size])


def text_lines(rng: np.random.Generator, vocab: np.ndarray, n_words: int) -> list[str]:
    """About n_words words as lines of 3-25 words: Zipf-like word choice, mixed case, punctuation."""
    ranks = np.arange(1, len(vocab) + 1)
    p = 1.0 / (ranks + 2.7)  # Zipf-Mandelbrot, exponent 1
    words = vocab[rng.choice(len(vocab), n_words, p=p / p.sum())]
    style = rng.random(n_words)
    words = np.where(style < 0.03, np.char.capitalize(words), words)
    words = np.where(style > 0.99, np.char.upper(words), words)
    words = np.char.add(words, rng.choice(PUNCTUATION, n_words, p=PUNCTUATION_P))
    quoted = rng.random(n_words) < 0.01
    words[quoted] = np.char.add(np.char.add('"', words[quoted]), '"')
    ends = np.cumsum(rng.integers(3, 26, size=n_words // 3 + 1))
    ends = ends[ends < n_words]
    lines = (" ".join(chunk) for chunk in np.split(words, ends))
    return [line[:1].upper() + line[1:] for line in lines]


def prepare(data: str, mb: float, files: int, seed: int, force: bool = False) -> None:
    """Write `files` CSV files of about `mb` MB in total into `data` (kept when already there)."""

    def build(folder: str) -> None:
        rng = np.random.default_rng(seed)
        vocab = vocabulary(rng, 20_000)
        words_per_file = int(mb * 1e6 / 6.2 / files)  # about 6.2 bytes per word with its space
        for i in range(files):
            lines = text_lines(rng, vocab, words_per_file)
            pd.DataFrame({"line": lines}).to_csv(os.path.join(folder, f"text-{i:02d}.csv"), index=False)

    if prepare_once(data, {"mb": mb, "files": files, "seed": seed}, build, force):
        print(f"{data}: {files} CSV files, {folder_size(data) / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=5, help="total size in MB (default 5)")
    parser.add_argument("--files", type=int, default=4, help="number of CSV files (default 4)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data", default=os.path.join(HERE, "data"), help="output folder (default ./data)")
    parser.add_argument("--force", action="store_true", help="regenerate even if the data is there")
    args = parser.parse_args()
    prepare(args.data, args.mb, args.files, args.seed, args.force)


if __name__ == "__main__":
    main()
