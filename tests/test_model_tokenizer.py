"""The tokenizer gives open_clip's ids exactly, finds its vocabulary, and says what to do without it.

The reference is open_clip's own tokenizer module, loaded from the installed ``open_clip_torch``
package file (``.ci/run`` installs it with ``--no-deps``; importing the package would need
torchvision). The literal ids below were read from it and document the traps.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
from pathlib import Path

import pytest

from vidscale.errors import CheckpointError, ModelNotFoundError
from vidscale.model import tokenizer as tok
from vidscale.model.tokenizer import ClipTokenizer, find_vocab

TRICKY = [
    "a lighthouse on a cliff at dusk",
    "!!", "wow!!! amazing!!", "stop! now!",
    "“curly” ‘quotes’ and \"straight\" 'ones'",
    "&amp; &lt;b&gt;bold&lt;/b&gt; &amp;amp; &quot;",
    "cafÃ© mojibake", "naïve café Ångström",
    "🚀 rocket over 🌊 waves", "東京の夜景", "ПРИВЕТ мир",
    "1280x2048 at 24fps, 16:9", "it's we'll they'RE",
    "  lots \n of\twhitespace  ", "UPPER Case MiXeD", "",
    "<start_of_text> literal specials <end_of_text>",
    "a very long prompt " * 30,
]


OPEN_CLIP = importlib.util.find_spec("open_clip")
needs_open_clip = pytest.mark.skipif(
    OPEN_CLIP is None, reason="reference and vocabulary: pip install --no-deps open_clip_torch==3.3.0 (.ci/run does)")


@pytest.fixture(scope="module")
def ours() -> ClipTokenizer:
    return ClipTokenizer.from_file(find_vocab())


@pytest.fixture(scope="module")
def reference():
    spec = OPEN_CLIP
    source = importlib.util.spec_from_file_location(
        "open_clip_tokenizer", Path(spec.submodule_search_locations[0]) / "tokenizer.py")
    module = importlib.util.module_from_spec(source)
    source.loader.exec_module(module)
    return module.SimpleTokenizer()


@needs_open_clip
@pytest.mark.parametrize("prompt", TRICKY)
def test_ids_match_open_clip(ours, reference, prompt):
    assert ours([prompt])[0].tolist() == reference(prompt)[0].tolist()


@needs_open_clip
def test_padding_is_zero_not_the_exclamation_mark(ours):
    assert ours([""])[0].tolist() == [49406, 49407] + [0] * 75
    assert ours(["!!"])[0, :4].tolist() == [49406, 748, 49407, 0]  # "!!" is one token, "!" is 0 only as pad
    assert ours(["!"])[0, :3].tolist() == [49406, 256, 49407]  # a lone "!" is "!</w>"; id 0 is "!" mid-word
    # An SD2-style transformers CLIPTokenizer(pad_token="!") splits "!" out as a special token and
    # gives [49406, 2781, 0, 0, 0, 1370, 0, 0, 49407] here: not what VC2's text encoder was trained on.
    assert ours(["wow!!! amazing!!"])[0, :7].tolist() == [49406, 2781, 995, 1370, 748, 49407, 0]


@needs_open_clip
def test_long_prompts_are_truncated_with_the_end_token_kept(ours):
    ids = ours(["word " * 100])[0].tolist()
    assert len(ids) == 77 and ids[0] == 49406 and ids[-1] == 49407 and 0 not in ids


@needs_open_clip
def test_cleaning_fixes_entities_mojibake_and_whitespace(ours):
    assert tok.clean("  A&amp;amp;B \n\t C  ") == "a&b c"
    assert tok.clean("cafÃ©") == "café"
    assert ours(["a  cat"]).tolist() == ours(["A CAT"]).tolist()


def test_the_byte_level_tokenizer_of_tiny_models():
    tiny = ClipTokenizer.byte_level()
    assert (tiny.vocab_size, tiny.sot_id, tiny.eot_id) == (514, 512, 513)
    position = {byte: i for i, byte in enumerate(tok.byte_alphabet())}
    # "&amp;é" -> "&é" -> words "&", "é" (bytes C3 A9); the last byte of a word carries "</w>" (+256)
    assert tiny(["&amp;é"])[0, :5].tolist() == [512, 256 + position[ord("&")], position[0xC3],
                                               256 + position[0xA9], 513]
    assert tiny(["&amp;"]).tolist() == tiny(["&"]).tolist()


def test_vocab_search_order(tmp_path, monkeypatch):
    explicit = tmp_path / "merges.txt"
    explicit.write_text("#version\nt h\n")
    folder = tmp_path / "model" / "tokenizer"
    folder.mkdir(parents=True)
    (folder / tok.VOCAB_NAME).write_bytes(gzip.compress(b"#version\nt h\n"))
    assert find_vocab(tmp_path / "model", explicit) == explicit
    assert find_vocab(tmp_path / "model") == folder / tok.VOCAB_NAME
    monkeypatch.setattr(tok.importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps open_clip_torch.*--vocab") as info:
        find_vocab(tmp_path / "elsewhere")
    assert str(tmp_path / "elsewhere" / "tokenizer" / tok.VOCAB_NAME) in str(info.value)
    assert "open_clip_torch (not installed)" in str(info.value)
    with pytest.raises(ModelNotFoundError, match=re.escape(str(tmp_path / "missing.txt.gz"))):
        find_vocab(explicit=tmp_path / "missing.txt.gz")


def test_vocab_from_an_installed_open_clip_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "site" / "open_clip"
    package.mkdir(parents=True)
    (package / tok.VOCAB_NAME).write_bytes(gzip.compress(b"#version\nt h\n"))
    spec = importlib.util.spec_from_file_location("open_clip", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    monkeypatch.setattr(tok.importlib.util, "find_spec", lambda name: spec if name == "open_clip" else None)
    assert find_vocab() == package / tok.VOCAB_NAME
    assert find_vocab(tmp_path / "model-without-tokenizer") == package / tok.VOCAB_NAME
    model = tmp_path / "model" / "tokenizer"
    model.mkdir(parents=True)
    (model / tok.VOCAB_NAME).write_bytes(b"")
    assert find_vocab(tmp_path / "model") == model / tok.VOCAB_NAME  # the model folder's copy comes first
    (package / tok.VOCAB_NAME).unlink()
    with pytest.raises(ModelNotFoundError, match="open_clip.*--vocab"):
        find_vocab()


def test_a_damaged_vocabulary_is_reported(tmp_path):
    broken = tmp_path / tok.VOCAB_NAME
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(CheckpointError, match="unreadable CLIP vocabulary"):
        ClipTokenizer.from_file(broken)
