"""TFDS builder over the project's own persona bank, with its train/eval splits.

Configs:

- ``personas``: one example per persona (id, role, name, description, facts as JSON,
  number of probes);
- ``probes``: one example per Q&A probe (persona id and role, question, options, key).

The splits are the bank's own (``train``/``eval``, fixed by persona id), so a persona's
examples never straddle splits. The bank ships inside the package; no manual download.

A built data set records a fingerprint of the bank it was built from. Because TFDS reuses a
built version silently, :meth:`PersonaBank.download_and_prepare` refuses to reuse one whose
fingerprint no longer matches the bank (delete the folder, or bump ``VERSION``).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import utils as tfds_utils

from persona_jax.data import persona_bank as bank

CONFIG_NAMES = ("personas", "probes")
Example = tuple[str, dict[str, Any]]


class StalePersonaBankError(RuntimeError):
    """A built persona-bank data set no longer matches the bank it was built from."""


def _persona_json(persona: bank.Persona) -> dict[str, Any]:
    return {
        "id": persona.id,
        "role": persona.role,
        "split": persona.split,
        "description": persona.description,
        "facts": persona.facts,
        "probes": [
            {"question": p.question, "options": list(p.options), "answer": p.answer}
            for p in persona.probes
        ],
    }


def load_bank(path: str | Path | None = None) -> dict[str, list[bank.Persona]]:
    """The bank's personas by split, every role, in the bank's own order."""
    return {
        split: [p for role in bank.ROLES for p in bank.load_personas(role, split, path=path)]
        for split in bank.SPLITS
    }


def bank_fingerprint(personas: Mapping[str, Sequence[bank.Persona]]) -> str:
    """A hash of everything the builder writes, to notice a bank that changed since."""
    content = {s: [_persona_json(p) for p in ps] for s, ps in sorted(personas.items())}
    blob = json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def bank_examples(config: str, personas: Sequence[bank.Persona]) -> list[Example]:
    """The examples of one config for one split's personas."""
    if config not in CONFIG_NAMES:
        raise ValueError(f"unknown config {config!r}; expected one of {CONFIG_NAMES}")
    out: list[Example] = []
    for persona in personas:
        if config == "personas":
            record = {
                "id": persona.id,
                "role": persona.role,
                "name": persona.name,
                "description": persona.description,
                "facts_json": json.dumps(persona.facts, sort_keys=True, ensure_ascii=False),
                "n_probes": len(persona.probes),
            }
            out.append((persona.id, record))
            continue
        for k, probe in enumerate(persona.probes):
            record = {
                "persona_id": persona.id,
                "role": persona.role,
                "question": probe.question,
                "options": list(probe.options),
                "answer": probe.answer,
            }
            out.append((f"{persona.id}:{k}", record))
    return out


def _features(config: str) -> tfds.features.FeaturesDict:
    text = tfds.features.Text
    if config == "personas":
        return tfds.features.FeaturesDict(
            {
                "id": text(),
                "role": text(),
                "name": text(),
                "description": text(),
                "facts_json": text(),
                "n_probes": np.int32,
            }
        )
    return tfds.features.FeaturesDict(
        {
            "persona_id": text(),
            "role": text(),
            "question": text(),
            "options": tfds.features.Sequence(text()),
            "answer": np.int32,
        }
    )


class PersonaBank(tfds.core.GeneratorBasedBuilder):
    """The project's persona bank (``train``/``eval``) as array_record data sets."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: Mapping[str, str] = {"1.0.0": "Personas and probes of the persona bank."}
    BUILDER_CONFIGS: Sequence[tfds.core.BuilderConfig] = [
        tfds.core.BuilderConfig(name=name) for name in CONFIG_NAMES
    ]

    @tfds_utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS 4.9.10 finds a package builder's file through `importlib_resources`, a
        # backport it does not install on Python >= 3.9; the class's own file is the answer.
        return epath.Path(inspect.getfile(cls))

    def __init__(
        self,
        *,
        bank_path: str | Path | None = None,
        file_format: str = "array_record",
        **kwargs: Any,
    ) -> None:
        self._bank_path = bank_path
        self._personas = load_bank(bank_path)
        self.fingerprint = bank_fingerprint(self._personas)
        super().__init__(file_format=file_format, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=_features(self.builder_config.name),
            metadata=tfds.core.MetadataDict(bank_fingerprint=self.fingerprint),
        )

    def built_fingerprint(self) -> str | None:
        """The fingerprint stored with the built data, or None when not built."""
        if not self.is_prepared():
            return None
        return self.info.metadata.get("bank_fingerprint")

    def download_and_prepare(self, *args: Any, **kwargs: Any) -> None:
        built = self.built_fingerprint()
        if built is not None and built != self.fingerprint:
            raise StalePersonaBankError(
                f"{self.data_dir} was built from another version of the persona bank "
                f"(fingerprint {built[:12]}, bank now {self.fingerprint[:12]}); delete that "
                "folder or bump PersonaBank.VERSION"
            )
        super().download_and_prepare(*args, **kwargs)

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[Example]]:
        del dl_manager  # the bank ships with the package
        return {
            split: self._generate_examples(bank_examples(self.builder_config.name, personas))
            for split, personas in self._personas.items()
        }

    def _generate_examples(self, items: list[Example]) -> Iterator[Example]:  # type: ignore[override]
        yield from items


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True, help="where TFDS writes records")
    args = parser.parse_args(argv)
    for config in CONFIG_NAMES:
        builder = PersonaBank(config=config, data_dir=str(args.data_dir))
        builder.download_and_prepare()
        counts = {s: info.num_examples for s, info in builder.info.splits.items()}
        print(f"{config}: {counts}")


if __name__ == "__main__":
    main()
