"""`python -m persona_jax.bench <subcommand> [options]`.

Each subcommand is a module of this package with a `main(argv) -> int`; they are imported
lazily so that one benchmark's heavy imports (PyTorch for baselines) never slow another.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "sampler": ("persona_jax.bench.sampler", "our jitted sampler vs transformers generate"),
    "episode": ("persona_jax.bench.episode", "incremental multi-turn episodes vs re-encoding"),
    "update": ("persona_jax.bench.update", "RL update step vs a PyTorch forward+backward"),
    "judge": ("persona_jax.bench.judge", "distilled judge vs the local LLM judge, lines/s"),
}


def usage() -> str:
    lines = ["usage: python -m persona_jax.bench <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {name:10s} {doc}" for name, (_, doc) in SUBCOMMANDS.items()]
    lines += ["", "`python -m persona_jax.bench <subcommand> --help` lists its options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"unknown benchmark {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
