"""Text side of the stack: tokenizer wrapper and chat formatting."""

from persona_jax.text.tokenizer import END_OF_TURN_TOKENS, Tokenizer, TokenizerError

__all__ = ["END_OF_TURN_TOKENS", "Tokenizer", "TokenizerError"]
