"""Per-image text: Reed et al.'s ``text_c10`` captions, word vectors, synthetic captions, and token arrays.

Real sources, read from a path (neither can be downloaded here):

* captions in Reed et al.'s layout (CVPR 2016, "Learning deep representations of fine-grained visual
  descriptions"): ``text_c10/<class folder>/<image stem>.txt``, one sentence a line, 10 per image. An xlsa17
  ``image_files`` entry ``.../images/001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg`` matches
  ``text_c10/001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.txt``; where the class folders differ (FLO's
  images are ``jpg/image_06734.jpg``, its captions ``text_c10/class_00077/image_06734.txt``) a unique stem matches;
* word vectors: word2vec ``.bin`` (header ``"V D\\n"``, then per word: the word, a space, D little-endian float32),
  word2vec ``.txt`` (the same header, then ``word v1 .. vD`` lines) or GloVe ``.txt`` (no header).

Without real captions, :func:`synth_captions` writes 10 sentences per image from the per-image attribute vectors
``a_img = z_y + j·ε`` that :func:`zsltune.data.synth.synth_features` made the image's feature from: each sentence
names a few of the image's strongest attributes (sampled, so the 10 sentences differ) with one of several synonyms,
in varying templates, with some attribute words swapped for random ones (paraphrase and annotator noise). The words
are pseudo-words, one set per attribute. Synthetic captions are written in the ``text_c10`` layout, so one reader
serves both.

Tokens: lowercase, ``[^\\W_]+`` words (punctuation dropped); a vocabulary over the captions of every image (all
splits: frozen vectors must cover unseen-class words), most frequent first, capped at ``max_vocab`` (ids 0 = pad,
1 = unknown); each sentence padded at the end to ``max_len`` tokens and, when longer, truncated from the front (the
authors' code, Keras ``pad_sequences(truncating="pre")``). The (N, S, L) int32 array and the vocabulary are cached
next to the captions (``text_c10/.zsltune/``; the zsltune cache when that is read-only), keyed by a hash of the image
list, the caption files' names, sizes and mtimes, and the settings, so trials never redo it.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import shutil
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np

from zsltune.data.cache import cache_dir
from zsltune.errors import DataError

TEXT_DIR = "text_c10"
WORD_VECTOR_FILES = ("word_vectors.bin", "word_vectors.txt")
SENTENCES = 10
MAX_LEN = 30
MAX_VOCAB = 10_000
PAD, UNK = 0, 1
_VERSION = "text-v1"
_WORD = re.compile(r"[^\W_]+")


# ---- captions on disk -------------------------------------------------------------------------------------------
def caption_paths(text_root: str | Path, image_files: list[str]) -> list[Path]:
    """The caption file of every image (in order); a DataError names the first image without one."""
    root = Path(text_root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"{root}: caption directory not found; put Reed et al.'s text_c10 captions there, or generate "
            f"synthetic ones with `zsltune data synth ... --captions`"
        )
    by_key: dict[tuple[str, str], Path] = {}
    by_stem: dict[str, list[Path]] = {}
    for cls in os.scandir(root):
        if not cls.is_dir() or cls.name.startswith("."):
            continue
        for f in os.scandir(cls.path):
            if f.name.endswith(".txt"):
                stem = f.name[:-4]
                by_key[(cls.name, stem)] = Path(f.path)
                by_stem.setdefault(stem, []).append(Path(f.path))
    out, missing = [], []
    for i, name in enumerate(image_files):
        p = PurePosixPath(name.replace("\\", "/"))
        hit = by_key.get((p.parent.name, p.stem))
        if hit is None and len(by_stem.get(p.stem, ())) == 1:
            hit = by_stem[p.stem][0]
        if hit is None:
            missing.append(i)
        out.append(hit)
    if missing:
        p = PurePosixPath(image_files[missing[0]].replace("\\", "/"))
        raise DataError(
            f"{root / p.parent.name / (p.stem + '.txt')}: no caption file for image {missing[0] + 1} "
            f"({image_files[missing[0]]}); {len(missing)} of {len(image_files)} images have none"
        )
    return out  # type: ignore[return-value]


def read_caption_file(path: Path, sentences: int = SENTENCES) -> list[str]:
    """``sentences`` sentences of one caption file (fewer lines are cycled, more are cut)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); re-save the captions as UTF-8"
        ) from None
    lines = [s.strip() for s in text.splitlines() if s.strip()]
    if not lines:
        raise DataError(f"{path}: empty caption file; every image needs at least one sentence")
    return [lines[i % len(lines)] for i in range(sentences)]


def read_text_c10(text_root: str | Path, image_files: list[str], sentences: int = SENTENCES) -> list[list[str]]:
    """The captions of every image: a list (N) of ``sentences`` strings each."""
    return [read_caption_file(p, sentences) for p in caption_paths(text_root, image_files)]


def write_text_c10(out: str | Path, image_files: list[str], captions: list[list[str]]) -> Path:
    """Write ``out/text_c10`` in Reed et al.'s layout; atomic (a partial directory is never visible)."""
    root = Path(out).expanduser() / TEXT_DIR
    tmp = root.with_name(f"{TEXT_DIR}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for name, sents in zip(image_files, captions, strict=True):
        p = PurePosixPath(name.replace("\\", "/"))
        d = tmp / p.parent.name
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{p.stem}.txt").write_text("\n".join(sents) + "\n", encoding="utf-8")
    try:
        os.replace(tmp, root)
    except OSError:  # another process wrote it first (same content: both are seeded)
        shutil.rmtree(tmp, ignore_errors=True)
        if not root.is_dir():
            raise
    return root


# ---- tokens -----------------------------------------------------------------------------------------------------
def tokenize(sentence: str) -> list[str]:
    return _WORD.findall(sentence.lower())


def build_vocab(token_lists: list[list[str]], max_vocab: int = MAX_VOCAB) -> list[str]:
    """Words by descending count (ties alphabetical) after ``<pad>``, ``<unk>``; ``max_vocab`` entries at most."""
    counts = Counter(w for t in token_lists for w in t)
    words = sorted(counts, key=lambda w: (-counts[w], w))[: max(0, max_vocab - 2)]
    return ["<pad>", "<unk>", *words]


def encode(token_lists: list[list[str]], vocab: list[str], max_len: int = MAX_LEN) -> np.ndarray:
    """(M, max_len) int32 ids: padded at the end, longer sentences keep their last ``max_len`` tokens."""
    index = {w: i for i, w in enumerate(vocab)}
    lens = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))  # (M,)
    flat = np.fromiter((index.get(w, UNK) for t in token_lists for w in t), dtype=np.int32, count=int(lens.sum()))
    keep = np.minimum(lens, max_len)  # (M,)
    first = np.cumsum(lens) - keep  # (M,) start of the kept tail of each sentence in flat
    pos = np.arange(max_len)  # (L,)
    valid = pos[None] < keep[:, None]  # (M, L)
    out = np.zeros((len(token_lists), max_len), dtype=np.int32)
    out[valid] = flat[(first[:, None] + pos[None])[valid]]
    return out


def _writable_dir(preferred: Path, fallback: Path) -> Path:
    for d in (preferred, fallback):
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            continue
    raise DataError(f"{preferred}: cannot write the token cache there nor in {fallback}")


def load_tokens(
    text_root: str | Path,
    image_files: list[str],
    *,
    sentences: int = SENTENCES,
    max_len: int = MAX_LEN,
    max_vocab: int = MAX_VOCAB,
) -> tuple[np.ndarray, list[str]]:
    """Token ids (N, sentences, max_len) int32 of every image's captions, and the vocabulary; cached on disk."""
    root = Path(text_root).expanduser()
    paths = caption_paths(root, image_files)
    h = hashlib.sha1(f"{_VERSION}:{sentences}:{max_len}:{max_vocab}:{len(image_files)}".encode())
    for name, p in zip(image_files, paths, strict=True):
        st = p.stat()
        h.update(f"{name}\0{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    key = h.hexdigest()[:16]
    cache = _writable_dir(root / ".zsltune", cache_dir() / "text")
    tok_path, voc_path = cache / f"tokens-{key}.npy", cache / f"tokens-{key}.vocab.json"
    if tok_path.is_file() and voc_path.is_file():
        return np.load(tok_path), json.loads(voc_path.read_text(encoding="utf-8"))
    token_lists = [tokenize(s) for p in paths for s in read_caption_file(p, sentences)]
    vocab = build_vocab(token_lists, max_vocab)
    tokens = encode(token_lists, vocab, max_len).reshape(len(paths), sentences, max_len)
    for path, write in (
        (voc_path, lambda f: f.write(json.dumps(vocab).encode())),
        (tok_path, lambda f: np.save(f, tokens)),
    ):
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    return tokens, vocab


# ---- word vectors -----------------------------------------------------------------------------------------------
def _assign(out: np.ndarray, found: np.ndarray, need: dict[str, int], word: str, vec: np.ndarray) -> None:
    """Exact (lowercase) words win over case variants ("Red" fills "red" only until "red" itself comes)."""
    i = need.get(word.lower())
    if i is not None and (not found[i] or word == word.lower()):
        out[i], found[i] = vec, True


def read_word_vectors(path: str | Path, vocab: list[str]) -> np.ndarray:
    """(len(vocab), D) float32 vectors of the vocabulary from word2vec .bin/.txt or GloVe .txt; unknown -> 0."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: word-vector file not found (word2vec .bin/.txt or GloVe .txt)")
    need = {w: i for i, w in enumerate(vocab) if i >= 2}
    if path.suffix == ".bin":
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            nl = mm.find(b"\n")
            head = mm[: max(nl, 0)].split()
            if nl < 0 or len(head) != 2 or not all(t.isdigit() for t in head):
                raise DataError(f"{path}: not a word2vec binary file (the first line must be 'VOCAB DIM')")
            n, dim = int(head[0]), int(head[1])
            out, found = np.zeros((len(vocab), dim), np.float32), np.zeros(len(vocab), bool)
            pos, rec = nl + 1, 4 * dim
            for k in range(n):
                while pos < len(mm) and mm[pos : pos + 1] in (b"\n", b"\r"):
                    pos += 1
                sp = mm.find(b" ", pos, pos + 4096)
                if sp < 0 or sp + 1 + rec > len(mm):
                    raise DataError(f"{path}: truncated at word {k + 1} of {n}; the file is incomplete")
                word = mm[pos:sp].decode("utf-8", errors="replace")
                if word.lower() in need:
                    _assign(out, found, need, word, np.frombuffer(mm, dtype="<f4", count=dim, offset=sp + 1))
                pos = sp + 1 + rec
    else:
        dim, out, found = -1, np.zeros((0, 0), np.float32), np.zeros(len(vocab), bool)
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8").rstrip()
                except UnicodeDecodeError:
                    raise DataError(f"{path}:{lineno}: not UTF-8 text; re-save the word vectors as UTF-8") from None
                parts = line.split(" ")
                if lineno == 1 and len(parts) == 2 and all(t.isdigit() for t in parts):
                    continue  # word2vec text header "V D"; GloVe has none
                if not line:
                    continue
                if dim < 0:
                    dim = len(parts) - 1
                    if dim < 1:
                        raise DataError(f"{path}:{lineno}: expected 'word v1 .. vD', got one field")
                    out = np.zeros((len(vocab), dim), np.float32)
                if parts[0].lower() in need:
                    if len(parts) != dim + 1:
                        raise DataError(f"{path}:{lineno}: {len(parts) - 1} values, expected {dim}")
                    try:
                        vec = np.asarray(parts[1:], dtype=np.float32)
                    except ValueError:
                        raise DataError(f"{path}:{lineno}: a value is not a number") from None
                    _assign(out, found, need, parts[0], vec)
        if dim < 0:
            raise DataError(f"{path}: empty word-vector file")
    if need and not found.any():
        raise DataError(f"{path}: none of the {len(need)} caption words has a vector; wrong file?")
    return out


def load_word_vectors(path: str | Path, vocab: list[str]) -> np.ndarray:
    """:func:`read_word_vectors`, cached in the zsltune cache by file identity and vocabulary."""
    path = Path(path).expanduser().resolve()
    st = path.stat() if path.is_file() else None
    if st is None:
        return read_word_vectors(path, vocab)
    h = hashlib.sha1(f"{_VERSION}:{path}:{st.st_size}:{st.st_mtime_ns}:".encode() + "\0".join(vocab).encode())
    cached = cache_dir() / "text" / f"wv-{h.hexdigest()[:16]}.npy"
    if cached.is_file():
        return np.load(cached)
    out = read_word_vectors(path, vocab)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f"{cached.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, out)
    os.replace(tmp, cached)
    return out


# ---- synthetic captions -----------------------------------------------------------------------------------------
OPENERS = ("this one has", "it has", "the object has", "a thing with", "this is a thing with", "we see", "there is")
LINKS = ("and", "with", "and a", "plus", "also")
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def attribute_words(p: int, *, synonyms: int = 3, seed: int = 12345) -> list[list[str]]:
    """``synonyms`` distinct pseudo-words for each of ``p`` attributes (seeded; never a template word)."""
    rng = np.random.default_rng(seed)
    taken = {w for t in (*OPENERS, *LINKS, "very") for w in t.split()}
    words: list[list[str]] = []
    for _ in range(p):
        row: list[str] = []
        while len(row) < synonyms:
            w = "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4))))
            if w not in taken:
                taken.add(w)
                row.append(w)
        words.append(row)
    return words


def synth_captions(
    img_att: np.ndarray,
    *,
    seed: int = 0,
    sentences: int = SENTENCES,
    top: int = 8,
    per_sentence: tuple[int, int] = (2, 5),
    synonyms: int = 3,
    noise: float = 0.1,
) -> list[list[str]]:
    """``sentences`` captions for each image from its attribute vector ``img_att`` (N, P).

    Each sentence names 2-4 attributes drawn (without replacement, weights ∝ exp(a)) from the image's ``top``
    strongest, each as one of ``synonyms`` pseudo-words ("very" before a strong one, half the time); with
    probability ``noise`` an attribute word is replaced by a random attribute's word.
    """
    a = np.asarray(img_att, dtype=np.float32)
    n, p = a.shape
    top = min(top, p)
    lo, hi = per_sentence
    vocab = attribute_words(p, synonyms=synonyms)  # the same words for every dataset of width P
    rng = np.random.default_rng(seed)
    cand = np.argpartition(-a, top - 1, axis=1)[:, :top]  # (N, top) strongest attributes of each image
    cand_val = np.take_along_axis(a, cand, 1)  # (N, top)
    gumbel = rng.gumbel(size=(n, sentences, top)).astype(np.float32)  # Gumbel top-k = sampling w/o replacement
    order = np.argsort(-(cand_val[:, None, :] + gumbel), axis=2)[:, :, : hi - 1]  # (N, S, hi-1)
    chosen = np.take_along_axis(cand[:, None, :].repeat(sentences, 1), order, 2)  # (N, S, hi-1) attribute ids
    strength = np.take_along_axis(a, chosen.reshape(n, -1), 1).reshape(chosen.shape)  # (N, S, hi-1)
    count = rng.integers(lo, hi, size=(n, sentences))  # (N, S) attributes named per sentence
    swap = rng.random(chosen.shape) < noise
    chosen = np.where(swap, rng.integers(0, p, size=chosen.shape), chosen)
    syn = rng.integers(0, synonyms, size=chosen.shape)
    very = (strength > 1.5) & (rng.random(chosen.shape) < 0.5) & ~swap
    opener = rng.integers(0, len(OPENERS), size=(n, sentences))
    link = rng.integers(0, len(LINKS), size=chosen.shape)
    out = []
    for i in range(n):
        caps = []
        for s in range(sentences):
            parts = [OPENERS[opener[i, s]]]
            for k in range(count[i, s]):
                if k:
                    parts.append(LINKS[link[i, s, k]])
                parts.append(("very " if very[i, s, k] else "") + vocab[chosen[i, s, k]][syn[i, s, k]])
            caps.append(" ".join(parts))
        out.append(caps)
    return out


def write_synth_captions(out: str | Path, image_files: list[str], img_att: np.ndarray, *, seed: int = 0) -> Path:
    """Synthetic captions of every image, written to ``out/text_c10``."""
    return write_text_c10(out, image_files, synth_captions(img_att, seed=seed))
