"""A thin, local-only wrapper around a Hugging Face tokenizer.

The sampler and the episode code speak token ids; this wrapper gives them the few things
they need (encode, decode, chat formatting, which ids end a turn, which id pads) with the
transformers API differences hidden in one place. It never touches the network: the
directory must already hold the tokenizer files (see `persona_jax.assets`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

# Markers that end an assistant turn in common chat templates. Generation must stop on
# them even when the tokenizer's `eos_token` is a different document-end token.
END_OF_TURN_TOKENS: tuple[str, ...] = (
    "<|im_end|>",  # ChatML (SmolLM2, Qwen)
    "<|eot_id|>",  # Llama 3
    "<|eom_id|>",  # Llama 3 tool calls
    "<end_of_turn>",  # Gemma
    "<|end|>",  # Phi-3
    "<|endoftext|>",  # GPT-2 style document end
)
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "spiece.model",
)

Message = Mapping[str, str]


class TokenizerError(ValueError):
    """The tokenizer cannot be loaded or cannot do what was asked (message names the dir)."""


class Tokenizer:
    """Encode/decode text and chat messages to the model's token ids."""

    def __init__(self, hf_tokenizer, *, source: str = "<in-memory>") -> None:
        self.hf = hf_tokenizer
        self.source = source
        vocab = hf_tokenizer.get_vocab()
        eos = hf_tokenizer.eos_token_id
        self.eos_ids: tuple[int, ...] = () if eos is None else (int(eos),)
        extra = [vocab[t] for t in END_OF_TURN_TOKENS if t in vocab]
        self.stop_ids: tuple[int, ...] = tuple(dict.fromkeys([*self.eos_ids, *extra]))
        pad = hf_tokenizer.pad_token_id
        if pad is None:
            pad = self.eos_ids[0] if self.eos_ids else 0
        self.pad_id: int = int(pad)
        self.vocab_size: int = len(hf_tokenizer)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> Tokenizer:
        """Load the tokenizer saved in a local Hugging Face model directory."""
        path = Path(model_dir)
        if not path.is_dir():
            raise TokenizerError(f"{path}: not a directory (expected a local model directory)")
        if not any((path / f).is_file() for f in _TOKENIZER_FILES):
            raise TokenizerError(
                f"{path}: no tokenizer files (looked for {', '.join(_TOKENIZER_FILES)}); "
                "fetch the model first with `python -m persona_jax.assets fetch`"
            )
        from transformers import AutoTokenizer  # heavy import, only when needed

        try:
            hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise TokenizerError(f"{path}: cannot load tokenizer: {e}") from e
        return cls(hf, source=str(path))

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without BOS/EOS added (prompts are built explicitly)."""
        return list(self.hf.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def chat_text(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """The chat template rendered as text (for logging and debugging)."""
        if not getattr(self.hf, "chat_template", None):
            raise TokenizerError(f"{self.source}: the tokenizer has no chat template")
        for i, m in enumerate(messages):
            if "role" not in m or "content" not in m:
                raise TokenizerError(f"message {i} needs 'role' and 'content' keys, got {dict(m)}")
        return self.hf.apply_chat_template(
            [dict(m) for m in messages],
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )

    def apply_chat_template(
        self, messages: Sequence[Message], add_generation_prompt: bool = True
    ) -> list[int]:
        """Token ids of a conversation formatted by the model's chat template.

        Rendered to text and then encoded without extra special tokens, so the ids are
        exactly what the template wrote (the template adds any BOS it wants itself).
        """
        return self.encode(self.chat_text(messages, add_generation_prompt))
