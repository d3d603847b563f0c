"""Make alice.txt: short whole sentences of Lewis Carroll's "Alice's Adventures in Wonderland" (1865, public domain).

The source is `alice29.txt` of the Canterbury compression corpus (Project Gutenberg's Millennium Fulcrum Edition
2.9), as the PyPI package Brotli ships it in its source distribution (brotli-1.2.1.tar.gz,
tests/testdata/alice29.txt, SHA-256 7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0):

    pip download --no-deps --no-binary :all: brotli==1.2.1
    tar xzf brotli-1.2.1.tar.gz brotli-1.2.1/tests/testdata/alice29.txt
    python make_alice.py brotli-1.2.1/tests/testdata/alice29.txt > alice.txt

Cleaning, so that a synthesiser reads every line as a plain sentence and its words can be scored by a recogniser:
the story from CHAPTER I to THE END without the chapter headings; the book's quote marks (`...') removed, keeping
apostrophes inside words (Alice's, don't); '--' read as a comma; words in capitals for emphasis (VERY) lower-cased;
split into sentences after . ! or ?; kept when 5 to 16 words long, of letters and , ; : ' . ! ? only, starting
with a capital; duplicates dropped; in book order.
"""

import hashlib
import re
import sys

SHA256 = "7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0"
HEADER = """\
# Short sentences of "Alice's Adventures in Wonderland" by Lewis Carroll (1865), in book order: public domain.
# Source: alice29.txt of the Canterbury corpus (Project Gutenberg, Millennium Fulcrum Edition 2.9) as shipped in
# the PyPI package Brotli 1.2.1 (sdist, tests/testdata/alice29.txt, SHA-256 7467306e...). Made by make_alice.py.
"""


def sentences(text: str) -> list[str]:
    body = text[text.index("CHAPTER I"): text.index("THE END")]
    body = re.sub(r"CHAPTER [IVXL]+\s*\n[^\n]*\n", " ", body)  # the heading and the chapter title under it
    body = " ".join(body.replace("`", " ").replace("--", ", ").split())
    body = re.sub(r"(?<![A-Za-z])'|'(?![A-Za-z])", " ", body)  # quote marks; apostrophes sit between letters
    body = re.sub(r"\b[A-Z]{2,}(?:'[A-Z]+)?\b", lambda m: m.group().lower(), body)  # emphasis; 'I' stays
    body = re.sub(r"\s+([,;:.!?])", r"\1", " ".join(body.split()))
    body = re.sub(r",(\s*,)+", ",", body)
    out, seen = [], set()
    for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", body):
        s = s.strip().lstrip(",;: ").strip()
        words = s.split()
        if (5 <= len(words) <= 16 and re.fullmatch(r"[A-Z][A-Za-z ,;:'.!?]*[.!?]", s)
                and not re.search(r"[.!?].", s) and s not in seen):
            seen.add(s)
            out.append(s)
    return out


if __name__ == "__main__":
    raw = open(sys.argv[1], "rb").read()
    if hashlib.sha256(raw).hexdigest() != SHA256:
        sys.exit(f"{sys.argv[1]}: not the alice29.txt this list was made from (SHA-256 differs)")
    sys.stdout.write(HEADER + "\n".join(sentences(raw.decode("latin-1"))) + "\n")
