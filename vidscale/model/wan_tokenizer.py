"""A byte-level stand-in for UMT5's tokenizer, built in-process: for ``wan-tiny`` and ``wan-random``.

UMT5's real tokenizer (a 256k SentencePiece vocabulary) ships in a Wan model folder and is loaded
from there. The random test models need one that exists without a download and gives every
process the same ids: one token per UTF-8 byte (ids 3..258) after T5's specials (``<pad>`` 0,
``</s>`` 1, ``<unk>`` 2), with ``</s>`` appended as T5 does. It is a
``PreTrainedTokenizerFast``, so ``save_pretrained`` writes it into a diffusers folder and
``AutoTokenizer`` reads it back.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIALS = ("<pad>", "</s>", "<unk>")  # T5's ids 0, 1, 2
MAX_LENGTH = 512  # WanPipeline's max_sequence_length


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """259 ids: T5's three specials, then the 256 byte symbols of GPT-2's byte-level alphabet."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(SPECIALS)}
    vocab.update({symbol: len(SPECIALS) + i for i, symbol in enumerate(sorted(alphabet))})
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=MAX_LENGTH)
