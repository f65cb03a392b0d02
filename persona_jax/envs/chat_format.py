"""Chat-template pieces as token ids, so turns can be spliced on device.

A live episode appends one model's generated reply to the *other* model's context, wrapped in
that model's chat template. Doing that on device means knowing the template's fixed pieces as
token ids. They are recovered from the tokenizer's own chat template by rendering
conversations whose contents are sentinel strings and cutting the text at the sentinels:

    P0 system-header | system | P1 (system end, user header) | user | P2 (user end, assistant
    header) | assistant | P3 (assistant end, user header) | user | P2 | ...

Any template of that shape (ChatML as in SmolLM2/Qwen2, Llama-3, Mistral's) yields the pieces.
"""

from __future__ import annotations

import dataclasses
from typing import Any

_S, _U, _A, _V = "\x01SYSTEM\x01", "\x01USERA\x01", "\x01ASSIST\x01", "\x01USERB\x01"


class ChatFormatError(ValueError):
    """The tokenizer's chat template does not have the turn structure episodes need."""


@dataclasses.dataclass(frozen=True)
class ChatFormat:
    """Token ids of the fixed template pieces (see module docs)."""

    system_header: tuple[int, ...]  # P0
    system_to_user: tuple[int, ...]  # P1
    user_to_assistant: tuple[int, ...]  # P2 (ends with the generation prompt)
    assistant_to_user: tuple[int, ...]  # P3

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> ChatFormat:
        """`tokenizer` is a `persona_jax.text.Tokenizer` (`chat_text` and `encode`)."""

        def render(messages: list[dict[str, str]]) -> str:
            return tokenizer.chat_text(messages, add_generation_prompt=True)

        short = render([{"role": "system", "content": _S}, {"role": "user", "content": _U}])
        long = render(
            [
                {"role": "system", "content": _S},
                {"role": "user", "content": _U},
                {"role": "assistant", "content": _A},
                {"role": "user", "content": _V},
            ]
        )
        try:
            p0, rest = short.split(_S)
            p1, p2 = rest.split(_U)
            p3 = long.split(_A)[1].split(_V)[0]
        except ValueError:
            raise ChatFormatError(
                "chat template does not render system/user/assistant turns in order"
            ) from None
        if not p2 or not p3:
            raise ChatFormatError("chat template has no turn separators")
        enc = lambda s: tuple(tokenizer.encode(s)) if s else ()
        return cls(enc(p0), enc(p1), enc(p2), enc(p3))

    def prompt(self, tokenizer: Any, system: str, first_user: str) -> list[int]:
        """System message and the first partner line, ending with the generation prompt."""
        enc = lambda s: list(tokenizer.encode(s))
        return [
            *self.system_header,
            *enc(system),
            *self.system_to_user,
            *enc(first_user),
            *self.user_to_assistant,
        ]
