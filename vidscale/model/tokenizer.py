"""The CLIP tokenizer exactly as VideoCrafter2's OpenCLIP text tower saw it during training.

Why not a transformers ``CLIPTokenizer``: SD 2.x tokenizers emulate open_clip's zero padding with
``pad_token="!"``, which changes how prompts containing "!!" tokenize. Why not open_clip itself:
importing it pulls in torchvision. So this module reimplements open_clip's route: ftfy, HTML
unescaping twice, whitespace collapsing and lower-casing, CLIP's byte-level BPE, then
``[start] + tokens + [end]`` truncated to 77 (the end token kept) and right-padded with id 0.

The BPE merges (``bpe_simple_vocab_16e6.txt.gz``, 1.3 MB) are not in VC2's checkpoint; see
:func:`find_vocab` for where they are looked for.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
from functools import lru_cache
from pathlib import Path

import ftfy
import regex
import torch

from ..errors import CheckpointError, ModelNotFoundError

VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
MERGES = 49152 - 256 - 2  # merges CLIP uses from the file (its vocabulary is 49408 ids)
CONTEXT = 77
SPECIALS = ("<start_of_text>", "<end_of_text>")
_PATTERN = regex.compile("|".join(SPECIALS) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                         regex.IGNORECASE)
_SPACES = regex.compile(r"\s+")  # the regex module's \s, as open_clip's (str.split() also splits at \x1c-\x1f)


@lru_cache(maxsize=1)
def byte_alphabet() -> dict[int, str]:
    """Each byte as a printable character (CLIP's reversible byte-to-unicode table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(shifted)}}


def clean(text: str) -> str:
    """open_clip's "lower" cleaning: ftfy, HTML entities (twice), collapsed whitespace, lower case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _SPACES.sub(" ", text).strip().lower()


class ClipTokenizer:
    """Prompts -> (B, 77) int64 token ids, identical to ``open_clip.tokenize``."""

    context_length = CONTEXT

    def __init__(self, merges: list[tuple[str, str]]):
        letters = list(byte_alphabet().values())
        vocab = letters + [c + "</w>" for c in letters] + ["".join(pair) for pair in merges] + list(SPECIALS)
        self.ids = {token: i for i, token in enumerate(vocab)}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.sot_id, self.eot_id = self.ids[SPECIALS[0]], self.ids[SPECIALS[1]]
        self.vocab_size = len(vocab)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_file(cls, path: Path) -> ClipTokenizer:
        """Read CLIP's merges file (``.txt.gz`` as shipped, or uncompressed)."""
        path = Path(path)
        try:
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8") as handle:
                lines = handle.read().split("\n")[1:MERGES + 1]
            merges = [line.split() for line in lines if line]
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: unreadable CLIP vocabulary ({exc}); download it again") from None
        if any(len(pair) != 2 for pair in merges):
            raise CheckpointError(f"{path}: not a CLIP BPE merges file (lines must be two symbols)")
        return cls([(first, second) for first, second in merges])

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **_loading: object) -> ClipTokenizer:
        """The merges file in a model folder's ``tokenizer/`` (what diffusers' pipeline loader calls)."""
        return cls.from_file(Path(pretrained_model_name_or_path) / VOCAB_NAME)

    def save_pretrained(self, save_directory: str | Path, **_saving: object) -> None:
        """Write the merges as ``VOCAB_NAME``, gzipped without a timestamp (same tokenizer, same bytes)."""
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        text = "#version: saved by vidscale\n" + "".join(f"{a} {b}\n" for a, b in self.ranks)
        with open(folder / VOCAB_NAME, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
            handle.write(text.encode("utf-8"))

    @classmethod
    def byte_level(cls) -> ClipTokenizer:
        """No merges: 514 ids (bytes, bytes ending a word, start, end). For the tiny test models."""
        return cls([])

    def encode(self, text: str) -> list[int]:
        """BPE ids of the cleaned text, without start and end tokens."""
        ids: list[int] = []
        for word in _PATTERN.findall(clean(text)):
            if word not in self._cache:
                self._cache[word] = self._bpe(word)
            ids += self._cache[word]
        return ids

    def _bpe(self, word: str) -> list[int]:
        if word in SPECIALS:
            return [self.ids[word]]
        alphabet = byte_alphabet()
        symbols = [alphabet[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        while len(symbols) > 1:
            pairs = list(zip(symbols, symbols[1:]))
            best = min(pairs, key=lambda pair: self.ranks.get(pair, len(self.ranks)))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return [self.ids[s] for s in symbols]

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(prompts), CONTEXT, dtype=torch.int64)  # padding is id 0, not "!"
        for row, prompt in enumerate(prompts):
            ids = [self.sot_id, *self.encode(prompt), self.eot_id]
            if len(ids) > CONTEXT:
                ids = ids[:CONTEXT - 1] + [self.eot_id]
            out[row, :len(ids)] = torch.tensor(ids)
        return out


def _open_clip_folders() -> list[Path]:
    """The installed ``open_clip`` package's folders, found without importing it (it imports torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [Path(folder) for folder in spec.submodule_search_locations]
    return [Path(spec.origin).parent] if spec.origin else []


def find_vocab(model_dir: Path | None = None, explicit: Path | None = None) -> Path:
    """Where the CLIP merges are: ``explicit`` (``--vocab``), the model folder's ``tokenizer/``,
    or the copy inside an installed ``open_clip_torch``."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise ModelNotFoundError(f"{explicit}: CLIP vocabulary file not found (given with --vocab)")
        return Path(explicit)
    candidates = [Path(model_dir) / "tokenizer" / VOCAB_NAME] if model_dir is not None else []
    folders = _open_clip_folders()
    candidates += [folder / VOCAB_NAME for folder in folders]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = [str(c) for c in candidates] + ([] if folders else ["open_clip_torch (not installed)"])
    raise ModelNotFoundError(
        f"the CLIP BPE vocabulary {VOCAB_NAME} (1.3 MB, not part of the checkpoint) was not found; looked in: "
        f"{', '.join(looked)}. Either `pip install --no-deps open_clip_torch` (it ships the file), or download "
        f"{VOCAB_NAME} from https://github.com/mlfoundations/open_clip (src/open_clip/) into "
        "<model folder>/tokenizer/ or pass --vocab PATH")
