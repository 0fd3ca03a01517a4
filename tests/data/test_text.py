"""Per-image text: text_c10 captions and word vectors in their real formats, tokens, synthetic captions, wiring."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from zsltune.data import attach_text, build_stage, load_dataset, load_stage, synth_fresh
from zsltune.data import text as T
from zsltune.data.synth import synth_features
from zsltune.errors import DataError

CUB_FILES = [  # as in CUB's res101.mat image_files
    "/BS/Deep_Fragments/work/MSc/CUB_200_2011/CUB_200_2011/images/001.Black_footed_Albatross/"
    "Black_Footed_Albatross_0046_18.jpg",
    "/BS/Deep_Fragments/work/MSc/CUB_200_2011/CUB_200_2011/images/002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg",
]
FLO_FILES = ["/BS/xian/work/data/Flowers/jpg/image_06734.jpg"]  # FLO: flat images, class folders only in text_c10
SENTS = [f"this bird has a white belly, number {i}." for i in range(10)]


def write_caption(root: Path, cls: str, stem: str, lines: list[str] | bytes) -> Path:
    p = root / "text_c10" / cls / f"{stem}.txt"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode())
    return p


@pytest.fixture
def cub_text(tmp_path: Path) -> Path:
    write_caption(tmp_path, "001.Black_footed_Albatross", "Black_Footed_Albatross_0046_18", SENTS)
    write_caption(tmp_path, "002.Laysan_Albatross", "Laysan_Albatross_0002_1027", ["A Short one!", "two"])
    return tmp_path / "text_c10"


def test_reads_reed_layout_by_class_folder_and_stem(cub_text: Path, tmp_path: Path) -> None:
    caps = T.read_text_c10(cub_text, CUB_FILES)
    assert caps[0] == SENTS
    assert caps[1] == ["A Short one!", "two"] * 5  # fewer than 10 lines are cycled
    write_caption(tmp_path, "class_00077", "image_06734", SENTS)  # FLO: matched by its unique stem
    assert T.read_text_c10(cub_text, FLO_FILES) == [SENTS]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty caption file"),
        (b"\n  \n", "empty caption file"),
        ("une fleur rosée\n".encode("latin-1"), "not UTF-8 text"),
        ("a bird\n".encode("utf-16"), "not UTF-8 text"),
    ],
)
def test_bad_caption_files_name_the_file(cub_text: Path, content: bytes, match: str) -> None:
    bad = write_caption(cub_text.parent, "001.Black_footed_Albatross", "Black_Footed_Albatross_0046_18", content)
    with pytest.raises(DataError, match=match) as e:
        T.read_text_c10(cub_text, CUB_FILES)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_image_without_captions_is_named(cub_text: Path) -> None:
    files = [*CUB_FILES, CUB_FILES[0].replace("0046_18", "0099_99")]
    with pytest.raises(DataError, match=r"Black_Footed_Albatross_0099_99\.txt: no caption file for image 3") as e:
        T.read_text_c10(cub_text, files)
    assert "1 of 3 images" in str(e.value)
    with pytest.raises(DataError, match="caption directory not found"):
        T.read_text_c10(cub_text.parent / "nowhere", files)


def test_tokenizer_vocab_and_padding() -> None:
    toks = [T.tokenize(s) for s in ("The bird's BELLY is white.", "white, white; wings", "a b c d e f g")]
    assert toks[0] == ["the", "bird", "s", "belly", "is", "white"]
    vocab = T.build_vocab(toks, max_vocab=6)
    assert vocab[:3] == ["<pad>", "<unk>", "white"] and len(vocab) == 6  # by count, then alphabetical
    ids = T.encode(toks, vocab, max_len=4)  # (3, 4)
    assert ids.dtype == np.int32 and ids.shape == (3, 4)
    index = {w: i for i, w in enumerate(vocab)}
    assert ids[1].tolist() == [2, 2, index.get("wings", 1), 0]  # padded at the end
    assert ids[2].tolist() == [index.get(w, 1) for w in ("d", "e", "f", "g")]  # truncated from the front


def test_tokens_are_cached_and_the_cache_follows_the_files(cub_text: Path, monkeypatch) -> None:
    tokens, vocab = T.load_tokens(cub_text, CUB_FILES)
    assert tokens.shape == (2, 10, 30) and tokens.dtype == np.int32 and vocab[0] == "<pad>"
    assert list((cub_text / ".zsltune").glob("tokens-*.npy"))

    def boom(*a, **k):
        raise AssertionError("re-tokenised although cached")

    with monkeypatch.context() as m:
        m.setattr(T, "read_caption_file", boom)
        again, _ = T.load_tokens(cub_text, CUB_FILES)
    np.testing.assert_array_equal(again, tokens)
    write_caption(cub_text.parent, "002.Laysan_Albatross", "Laysan_Albatross_0002_1027", ["zebra zebra zebra"])
    changed, vocab2 = T.load_tokens(cub_text, CUB_FILES)
    assert "zebra" in vocab2 and not np.array_equal(changed, tokens)


VECS = {"white": [1.0, 2.0, 3.0], "Belly": [4.0, 5.0, 6.0], "belly": [7.0, 8.0, 9.0], "ocean": [0.5, 0.5, 0.5]}


def write_vectors(path: Path, kind: str) -> Path:
    if kind == "bin":
        with open(path, "wb") as f:
            f.write(f"{len(VECS)} 3\n".encode())
            for w, v in VECS.items():  # word, space, D float32 little-endian (and word2vec's newline)
                f.write(w.encode() + b" " + struct.pack("<3f", *v) + b"\n")
    else:
        lines = [f"{w} {' '.join(map(str, v))}" for w, v in VECS.items()]
        header = [f"{len(VECS)} 3"] if kind == "w2v.txt" else []
        path.write_text("\n".join(header + lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["bin", "w2v.txt", "glove.txt"])
def test_word_vectors_in_every_format(tmp_path: Path, kind: str) -> None:
    path = write_vectors(tmp_path / f"vectors.{kind}", kind)
    vocab = ["<pad>", "<unk>", "white", "belly", "nest"]
    vec = T.read_word_vectors(path, vocab)
    assert vec.dtype == np.float32 and vec.shape == (5, 3)
    np.testing.assert_array_equal(vec[2], [1, 2, 3])
    np.testing.assert_array_equal(vec[3], [7, 8, 9])  # the exact lowercase word beats "Belly"
    assert not vec[[0, 1, 4]].any()  # pad, unknown and uncovered words -> zero vectors
    np.testing.assert_array_equal(T.load_word_vectors(path, vocab), vec)  # cached copy


def test_bad_word_vector_files(tmp_path: Path) -> None:
    vocab = ["<pad>", "<unk>", "white", "ocean"]
    good = write_vectors(tmp_path / "v.bin", "bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(good[:-10])
    with pytest.raises(DataError, match=r"cut\.bin: truncated at word 4 of 4"):
        T.read_word_vectors(tmp_path / "cut.bin", vocab)
    (tmp_path / "nohead.bin").write_bytes(good[good.index(b"\n") + 1 :])
    with pytest.raises(DataError, match=r"nohead\.bin: not a word2vec binary file"):
        T.read_word_vectors(tmp_path / "nohead.bin", vocab)
    (tmp_path / "short.txt").write_text("white 1 2 3\nocean 1 2\n")
    with pytest.raises(DataError, match=r"short\.txt:2: 2 values, expected 3"):
        T.read_word_vectors(tmp_path / "short.txt", vocab)
    (tmp_path / "other.txt").write_text("zebra 1 2 3\n")
    with pytest.raises(DataError, match=r"other\.txt: none of the 2 caption words has a vector"):
        T.read_word_vectors(tmp_path / "other.txt", vocab)


def test_synth_features_returns_the_image_attributes_without_changing_the_features() -> None:
    rng = np.random.default_rng(3)
    att, labels = rng.random((12, 16)), rng.integers(0, 12, 700)
    plain = synth_features(att, labels, seed=5, feature_dim=24, chunk=256)
    feats, a_img = synth_features(att, labels, seed=5, feature_dim=24, chunk=256, return_image_attributes=True)
    np.testing.assert_array_equal(plain, feats)
    z = (att - att.mean(0)) / att.std(0)
    jitter = a_img - z[labels]
    assert a_img.shape == (700, 16) and 0.9 < jitter.std() < 1.1  # z_y + 1.0·ε at difficulty 1


def test_synthetic_captions_carry_per_image_information() -> None:
    rng = np.random.default_rng(0)
    att, labels = rng.random((10, 40)), np.repeat(np.arange(10), 60)  # 60 images per class
    _, a_img = synth_features(att, labels, seed=1, feature_dim=8, return_image_attributes=True)
    caps = T.synth_captions(a_img, seed=2)
    assert len(caps) == 600 and all(len(c) == 10 for c in caps) and len({s for c in caps for s in c}) > 5000
    word_att = {w: p for p, ws in enumerate(T.attribute_words(40)) for w in ws}
    counts = np.zeros((600, 40))  # how often each image's captions name each attribute
    for i, c in enumerate(caps):
        for w in T.tokenize(" ".join(c)):
            if w in word_att:
                counts[i, word_att[w]] += 1
    # within a class, the attributes an image's captions name follow that image's own jitter
    z = a_img - np.stack([a_img[labels == y].mean(0) for y in labels])  # (N, P) per-image deviation
    c = counts - np.stack([counts[labels == y].mean(0) for y in labels])
    corr = np.mean([np.corrcoef(z[i], c[i])[0, 1] for i in range(600)])
    assert corr > 0.3, corr
    # and retrieval: among its classmates, an image's own captions match its attribute deviation best
    hits = []
    for y in range(10):
        rows = np.flatnonzero(labels == y)
        hits.append(np.argmax(z[rows] @ c[rows].T, axis=1) == np.arange(len(rows)))  # (60,) image -> captions
    assert np.mean(hits) > 0.3, np.mean(hits)  # chance: 1/60
    assert T.synth_captions(a_img, seed=2) == caps  # seeded


def test_load_stage_with_synthetic_captions(tmp_path: Path) -> None:
    out = synth_fresh(tmp_path / "T", classes=8, attributes=12, images=240, feature_dim=16, seed=0, captions=True)
    assert (out / "text_c10").is_dir()
    ds = attach_text(load_dataset(out))
    assert ds.tokens.shape == (240, 10, 30) and ds.word_vectors is None
    st = build_stage(ds, "val")
    for tok, idx in ((st.tokens_train, st.index_train), (st.tokens_seen, st.index_seen)):
        np.testing.assert_array_equal(tok, ds.tokens[idx])
    np.testing.assert_array_equal(st.tokens_unseen, ds.tokens[st.index_unseen])
    assert st.vocab_size == len(ds.vocab)
    # the vocabulary covers words that only an unseen class's captions use (frozen vectors need them)
    unseen_img = ds.image_files[st.index_unseen[0]].split("/")
    (out / "text_c10" / unseen_img[-2] / unseen_img[-1].replace(".jpg", ".txt")).write_text("a zebra\n")
    ds = attach_text(load_dataset(out))
    st = build_stage(ds, "val")
    assert "zebra" in ds.vocab and ds.vocab.index("zebra") in st.tokens_unseen[0]
    # load_stage(text=...) and word vectors found next to the data
    words = ds.vocab[2:]
    (out / "word_vectors.txt").write_text("".join(f"{w} {i} 1.5\n" for i, w in enumerate(words)))
    st2 = load_stage(str(out), "val", text=True)
    assert st2.word_vectors.shape == (len(ds.vocab), 2) and st2.word_vectors[2:, 1].min() == 1.5
    plain = load_stage(str(out), "val")
    assert plain.tokens_train is None and plain.vocab_size == 0


def test_stage_without_captions_says_how_to_get_them(tiny_dataset_dir: Path) -> None:
    with pytest.raises(DataError, match=r"text_c10: no captions; put Reed et al\.'s text_c10 there"):
        load_stage(str(tiny_dataset_dir), "val", text=True)


def test_cli_synth_writes_captions(tmp_path: Path, capsys) -> None:
    from zsltune.cli import main

    out = tmp_path / "toy"
    args = ["--classes", "6", "--attributes", "8", "--images", "60", "--dim", "8", "--captions"]
    code = main(["data", "synth", *args, "--out", str(out)])
    assert code == 0 and "text_c10" in capsys.readouterr().out
    assert len(list((out / "text_c10").glob("*/*.txt"))) == 60


def test_synthetic_captions_around_the_real_cub_class_side(real_root: Path, tmp_path: Path) -> None:
    from zsltune.data import synth_like

    out = synth_like(real_root / "CUB", tmp_path / "CUB", feature_dim=8, captions=True)
    ds = attach_text(load_dataset(out))
    assert ds.tokens.shape == (11788, 10, 30) and len(list((out / "text_c10").glob("[!.]*"))) == 200
