"""Rebuild the course corpus byte for byte from two Debian packages.

    python scripts/build_corpus.py            # writes minillm/corpus/{prose,code}.txt.xz
    python scripts/build_corpus.py --check    # rebuilds in a temp dir and compares sha256

Prose: the King James Bible (public domain), printed by the `bible` program of Debian's
`bible-kjv` package from the data in `bible-kjv-text`, one book per document, one paragraph per
chapter, wrapped at 72 columns like a Project Gutenberg book.
Code: modules of CPython 3.11's standard library (PSF licence) from Debian's
`libpython3.11-stdlib` / `libpython3.11-minimal` packages, one module per document.

Documents are separated by the ASCII record separator (0x1E), which neither source contains.
Needs a Debian/Ubuntu machine with `apt-get` (amd64, the `bible` binary is native code).
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import re
import subprocess
import tempfile
import textwrap
from pathlib import Path

PACKAGES = {
    "bible-kjv": "4.38",
    "bible-kjv-text": "4.38",
    "libpython3.11-minimal": "3.11.2-6+deb12u8",
    "libpython3.11-stdlib": "3.11.2-6+deb12u8",
}
# Packages of the standard library taken whole, besides every top-level module.
CODE_PACKAGES = ("collections", "concurrent", "http", "json", "logging", "urllib")
# Top-level files that are generated data or jokes rather than code a person wrote.
CODE_SKIP = re.compile(r"^(_sysconfigdata.*|this|antigravity|sitecustomize|_distutils_system_mod)\.py$")
SEPARATOR = "\x1e"
CORPUS_DIR = Path(__file__).resolve().parents[1] / "minillm" / "corpus"


def fetch_packages(workdir: Path) -> Path:
    """Download the pinned .deb files and unpack them into workdir/root."""
    pins = [f"{name}={version}" for name, version in PACKAGES.items()]
    subprocess.run(["apt-get", "download", *pins], cwd=workdir, check=True, capture_output=True)
    root = workdir / "root"
    for deb in sorted(workdir.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def build_prose(root: Path) -> str:
    """The KJV as 66 documents: 'THE BOOK OF X', then one wrapped paragraph per chapter."""
    raw = subprocess.run(
        [str(root / "usr/bin/bible"), "-p", str(root / "usr/lib"), "-l10000", "Gen1:1-Rev22:21"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    books: dict[str, list[list[str]]] = {}
    for line in raw.splitlines():
        if not line.strip():
            continue
        heading = re.fullmatch(r"(\S.*) (\d+)", line)
        if heading:  # "Genesis 1": a new chapter
            books.setdefault(heading.group(1), []).append([])
            continue
        verse = re.fullmatch(r"\s+\d+ (.*)", line)
        text = verse.group(1) if verse else line.strip()  # a continuation line
        chapters = books[next(reversed(books))]
        if verse:
            chapters[-1].append(text)
        else:
            chapters[-1][-1] += " " + text
    documents = []
    for book, chapters in books.items():
        parts = [f"THE BOOK OF {book.upper()}"]
        for number, verses in enumerate(chapters, start=1):
            parts.append(f"CHAPTER {number}")
            parts.append(textwrap.fill(" ".join(verses), width=72))
        documents.append("\n\n".join(parts) + "\n")
    return SEPARATOR.join(documents)


def build_code(root: Path) -> str:
    """Standard-library modules, each preceded by a comment naming its path."""
    lib = root / "usr/lib/python3.11"
    files = [p for p in lib.glob("*.py") if not CODE_SKIP.match(p.name)]
    for package in CODE_PACKAGES:
        files += list((lib / package).rglob("*.py"))
    documents = []
    for path in sorted(files, key=lambda p: p.relative_to(lib).as_posix()):
        source = path.read_text(encoding="utf-8")
        if SEPARATOR in source:
            raise ValueError(f"{path} contains the document separator")
        documents.append(f"# Lib/{path.relative_to(lib).as_posix()}\n{source}")
    return SEPARATOR.join(documents)


def write(text: str, path: Path) -> str:
    """Write text as .xz (fixed preset, so the same liblzma gives the same bytes); return sha256."""
    data = text.encode("utf-8")
    path.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="rebuild to a temp dir and compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = fetch_packages(Path(tmp))
        out = Path(tmp) / "out" if args.check else CORPUS_DIR
        out.mkdir(parents=True, exist_ok=True)
        digests = {
            "prose.txt": write(build_prose(root), out / "prose.txt.xz"),
            "code.txt": write(build_code(root), out / "code.txt.xz"),
        }
        for name, digest in digests.items():
            print(f"{name}  sha256 {digest}")
        if args.check:
            for name, digest in digests.items():
                committed = hashlib.sha256(lzma.decompress((CORPUS_DIR / f"{name}.xz").read_bytes())).hexdigest()
                status = "OK" if committed == digest else "DIFFERS"
                print(f"{name}: {status}")


if __name__ == "__main__":
    main()
