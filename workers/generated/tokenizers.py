"""Tokenizers built offline for generated models: BART byte-level BPE (Florence-2) and CLIP BPE (CLIP, X-CLIP)."""

from __future__ import annotations

from typing import Any


def build_bart_tokenizer(added_tokens: tuple[str, ...] = ()) -> Any:
    """A BART byte-level BPE tokenizer: specials, the 256 byte symbols, no merges, added_tokens as special tokens.

    Every byte is its own token (no merges), which is enough to encode any prompt; <image> is the
    processor's image token.
    """
    from transformers import BartTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {token: index for index, token in enumerate(("<s>", "<pad>", "</s>", "<unk>"))}
    for symbol in bytes_to_unicode().values():
        vocab.setdefault(symbol, len(vocab))
    vocab["<mask>"] = len(vocab)
    tokenizer = BartTokenizer(vocab=vocab, merges=[], extra_special_tokens={"image_token": "<image>"})
    tokenizer.add_tokens(list(added_tokens), special_tokens=True)
    return tokenizer


def build_clip_tokenizer() -> Any:
    """A CLIP byte-level BPE tokenizer: each byte symbol, bare and word-final, no merges."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    tokens = [*symbols, *(s + "</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[])


def word_merges(texts: list[str]) -> list[tuple[str, str]]:
    """BPE merges that spell every word of texts left to right, ending on the end-of-word symbol."""
    merges: list[tuple[str, str]] = []
    for text in texts:
        for word in text.lower().split():
            symbols = list(word[:-1]) + [word[-1] + "</w>"]
            while len(symbols) > 1:
                pair = (symbols[0], symbols[1])
                if pair not in merges:
                    merges.append(pair)
                symbols = [symbols[0] + symbols[1]] + symbols[2:]
    return merges


def build_word_clip_tokenizer(texts: list[str]) -> Any:
    """A CLIP BPE tokenizer: byte alphabet, whole-word merges for texts, CLIP's special tokens (X-CLIP's prompts).

    The special tokens take the highest ids, as in CLIP, because X-CLIP's text tower pools at argmax(input_ids).
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = word_merges(texts)
    tokens = alphabet + [symbol + "</w>" for symbol in alphabet]
    tokens += [a + b for a, b in merges if a + b not in tokens]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
