"""The Llama decoder family: Llama (1/2/3, incl. Llama-3 RoPE scaling), SmolLM2, Qwen2, Mistral."""

from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import KVCache, Llama, ScalarHead, init_cache

__all__ = ["KVCache", "Llama", "LlamaConfig", "ScalarHead", "init_cache"]
