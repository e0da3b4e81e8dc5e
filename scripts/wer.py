#!/usr/bin/env python3
"""Word error rate of a transcript against the text that was spoken.

usage: wer.py REFERENCE HYPOTHESIS [MAX]   prints the WER; exits 1 when it is above MAX.
Case and punctuation are ignored; the rate is word-level edit distance / reference words.
"""
import re
import sys


def words(text):
    return [w for w in re.sub(r"[^\w\s']", " ", text.lower()).split() if w]


def wer(reference, hypothesis):
    r, h = words(reference), words(hypothesis)
    row = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, row[0] = row[0], i
        for j, hw in enumerate(h, 1):
            prev, row[j] = row[j], min(prev + (rw != hw), row[j - 1] + 1, row[j] + 1)
    return row[len(h)] / max(len(r), 1)


if __name__ == "__main__":
    rate = wer(sys.argv[1], sys.argv[2])
    print(f"{rate:.3f}")
    if len(sys.argv) > 3 and rate > float(sys.argv[3]):
        sys.exit(1)
