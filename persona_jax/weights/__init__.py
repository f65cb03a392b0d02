"""Model weights in and out: Hugging Face safetensors directories and llama.cpp GGUF files.

`load_pretrained` reads either kind into our stacked parameter layout (see `names.py`);
`save_pretrained` writes a Hugging Face directory that `transformers` loads without warnings;
`convert_gguf_to_hf` turns a GGUF file into such a directory, tokenizer included.
"""

from persona_jax.weights.errors import WeightsError
from persona_jax.weights.export import save_pretrained
from persona_jax.weights.gguf_io import convert_gguf_to_hf
from persona_jax.weights.load import load_model, load_pretrained, model_from_params

__all__ = [
    "WeightsError",
    "convert_gguf_to_hf",
    "load_model",
    "load_pretrained",
    "model_from_params",
    "save_pretrained",
]
