"""TFDS builder over the paper's released data, readable without TensorFlow.

Configs:

- ``personas``: every persona per task, from the config persona files and the dialogues;
- ``prompt_to_line``: one example per judged line with a readable verdict (label 1: the
  line contradicts the speaker's persona);
- ``line_to_line``: one example per judged line with a readable index list (label 1: the
  judge named an earlier line of the same speaker that conflicts with it);
- ``qa``: the persona probes whose options and answer key survived in the release.

Splits are by persona, never by line: a persona's hash puts it in train, validation or test
(80/10/10). Personas that share a dialogue (the two chat partners) are kept together by
hashing their group, so no dialogue and no persona straddles two splits.

Caveat: the stored scores of the two Mistral-judged therapy files
(``therapy/exp/dialogues/*``) only fit the reading "YES = consistent", yet the judge's own
reasons there mostly use YES for "contradicts" (roughly 70% of the verdicts whose reason
says clearly "aligns" or "contradicts" go against that reading). Their prompt-to-line labels
are therefore doubtful; every line record carries ``source`` and ``polarity`` so that a user
can leave them out.

Records are written as ``array_record``, so building and reading need no TensorFlow:
``builder.download_and_prepare(download_config=DownloadConfig(manual_dir=...))`` then
``builder.as_data_source()`` (or ``tfds.data_source``) for random access. The build prints a
:class:`~persona_jax.data.release_labels.BuildReport`. From the command line::

    python -m persona_jax.data.tfds.consistent_llms --manual_dir=DATA --data_dir=OUT
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import utils as tfds_utils

from persona_jax.data.release_labels import BuildReport, LabelledLine, labelled_lines, probe_items
from persona_jax.data.released import (
    LABEL_NAMES,
    ROLES,
    Dialogue,
    ReleasedFormatError,
    Task,
    find_dialogue_files,
    load_dialogues,
    persona_id,
)
from persona_jax.metrics.consistency import resolve_polarity
from persona_jax.metrics.verdicts import Polarity

SPLITS = ("train", "validation", "test")
# Upper bounds of the hash buckets (out of 100) that make each split: 80/10/10.
_SPLIT_BOUNDS = (80, 90, 100)
CONFIG_NAMES = ("personas", "prompt_to_line", "line_to_line", "qa")
# The persona-holding role of each task's config persona file.
_SIMULATED_ROLE: dict[Task, str] = {
    "chatting": "chat",
    "education": "student",
    "therapy": "patient",
}
Example = tuple[str, dict[str, Any]]
logger = logging.getLogger(__name__)


def split_of(group_key: str) -> str:
    """The split of a persona group, from a hash of its key (the least persona id in it)."""
    bucket = int(hashlib.sha256(group_key.encode("utf-8")).hexdigest(), 16) % 100
    return next(s for s, bound in zip(SPLITS, _SPLIT_BOUNDS, strict=True) if bucket < bound)


class _Groups:
    """Union-find over persona ids: personas that share a dialogue share a split."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, key: str) -> str:
        self._parent.setdefault(key, key)
        while self._parent[key] != key:
            self._parent[key] = self._parent[self._parent[key]]
            key = self._parent[key]
        return key

    def join(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)

    def split(self, key: str) -> str:
        return split_of(self.find(key))


@dataclass
class _Persona:
    task: Task
    role: str
    text: str
    name: str = ""
    details: str = ""
    n_dialogues: int = 0


def _config_personas(root: Path) -> Iterator[_Persona]:
    """Personas listed in the release's config files (those present under ``root``)."""
    readers: dict[str, tuple[Task, Callable[[Any], Iterator[tuple[str, str, str]]]]] = {
        "chatting/config_chatting_personas.json": (
            "chatting",
            lambda raw: ((item["persona"], item.get("name", ""), "") for item in raw),
        ),
        "education/config_education_personas.json": (
            "education",
            lambda raw: ((item["description"], "", item["grade_level"]) for _, item in raw),
        ),
        "therapy/config_therapy_personas.json": (
            "therapy",
            lambda raw: ((item["description"], "", item.get("strategy", "")) for item in raw),
        ),
        "therapy/MentalChat16K_sampled_personas.json": (
            "therapy",
            lambda raw: ((text, name, "") for name, text in dict(raw).items()),
        ),
    }
    for relative, (task, read) in readers.items():
        path = root / relative
        if not path.is_file():
            continue
        try:
            entries = list(read(json.loads(path.read_text(encoding="utf-8"))))
        except (KeyError, TypeError, ValueError) as err:
            raise ReleasedFormatError(
                f"{path}: not a persona list this reader knows ({err!r})"
            ) from err
        for text, name, details in entries:
            yield _Persona(task, _SIMULATED_ROLE[task], text, name=name, details=details)


def _add_persona(personas: dict[tuple[str, str], _Persona], new: _Persona) -> str:
    pid = persona_id(new.text)
    old = personas.setdefault((new.task, pid), new)
    if old is not new:
        old.name = old.name or new.name
        old.details = old.details or new.details
        old.n_dialogues += new.n_dialogues
    return pid


def _line_record(line: LabelledLine, label: int) -> dict[str, Any]:
    return {
        "task": line.task,
        "role": line.role,
        "persona_id": line.persona_id,
        "persona": line.persona,
        "dialogue_id": line.dialogue_id,
        "source": line.source,
        "polarity": line.polarity,
        "line_index": line.line_index,
        "speaker_name": line.speaker_name,
        "history": list(line.history),
        "line": line.line,
        "label": label,
    }


@dataclass
class _Release:
    """Everything read from a data folder that the configs are cut from."""

    files: list[tuple[list[Dialogue], Polarity]]
    personas: dict[tuple[str, str], _Persona]
    groups: _Groups
    report: BuildReport


def _read_release(root: Path) -> _Release:
    files = find_dialogue_files(root)
    if not files:
        raise FileNotFoundError(f"{root}: no released dialogue files matching */exp/**/*.json")
    release = _Release([], {}, _Groups(), BuildReport())
    for path in files:
        dialogues = load_dialogues(path, root=root)
        if not dialogues:
            continue
        polarity = resolve_polarity(dialogues, source=dialogues[0].source)
        release.report.polarity[dialogues[0].source] = polarity
        release.files.append((dialogues, polarity))
        for dialogue in dialogues:
            ids = [
                _add_persona(
                    release.personas,
                    _Persona(dialogue.task, ROLES[dialogue.task][speaker], text, n_dialogues=1),
                )
                for speaker, text in sorted(dialogue.personas.items())
                if text.strip()
            ]
            for other in ids[1:]:
                release.groups.join(ids[0], other)
    for persona in _config_personas(root):
        _add_persona(release.personas, persona)
    return release


def _dialogue_records(
    config: str, dialogue: Dialogue, polarity: Polarity, report: BuildReport
) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(key, persona id, task, record) of one dialogue's examples for a line or Q&A config."""
    lines = list(labelled_lines(dialogue, polarity, report))
    probes = list(probe_items(dialogue, report))
    for line in lines:
        key = f"{line.dialogue_id}:{line.line_index}"
        if config == "prompt_to_line" and line.prompt_label is not None:
            yield key, line.persona_id, line.task, _line_record(line, line.prompt_label)
        if config == "line_to_line" and line.index_label is not None:
            record = _line_record(line, line.index_label)
            record["conflict_indices"] = list(line.conflict_indices or ())
            yield key, line.persona_id, line.task, record
    if config == "qa":
        for k, probe in enumerate(probes):
            record = {
                "task": probe.task,
                "role": probe.role,
                "persona_id": probe.persona_id,
                "persona": probe.persona,
                "dialogue_id": probe.dialogue_id,
                "source": probe.source,
                "question": probe.question,
                "options": list(probe.options),
                "answer": probe.answer,
            }
            yield f"{probe.dialogue_id}:{k}", probe.persona_id, probe.task, record


def build_examples(root: Path, config: str) -> tuple[dict[str, list[Example]], BuildReport]:
    """Every example of one config under a data folder, by split, with the build report.

    Reads all dialogue files (polarity is resolved per file; a file that fits neither
    reading stops the build with ``PolarityError``), groups personas, and assigns splits.
    """
    if config not in CONFIG_NAMES:
        raise ValueError(f"unknown config {config!r}; expected one of {CONFIG_NAMES}")
    release = _read_release(Path(root))
    report = release.report
    out: dict[str, list[Example]] = {split: [] for split in SPLITS}
    records: list[tuple[str, str, str, dict[str, Any]]] = []
    for dialogues, polarity in release.files:
        for dialogue in dialogues:
            records.extend(_dialogue_records(config, dialogue, polarity, report))
    if config == "personas":
        for (task, pid), persona in sorted(release.personas.items()):
            record = {
                "task": task,
                "role": persona.role,
                "persona_id": pid,
                "persona": persona.text,
                "name": persona.name,
                "details": persona.details,
                "n_dialogues": persona.n_dialogues,
            }
            records.append((f"{task}:{pid}", pid, task, record))
    for key, pid, task, record in records:
        split = release.groups.split(pid)
        out[split].append((key, record))
        report.examples[(config, task, split)] += 1
    return out, report


def _features(config: str) -> tfds.features.FeaturesDict:
    text = tfds.features.Text
    common = {
        "task": text(),
        "role": text(),
        "persona_id": text(),
        "persona": text(),
    }
    if config == "personas":
        extra = {"name": text(), "details": text(), "n_dialogues": np.int32}
    elif config == "qa":
        extra = {
            "dialogue_id": text(),
            "source": text(),
            "question": text(),
            "options": tfds.features.Sequence(text()),
            "answer": np.int32,
        }
    else:
        extra = {
            "dialogue_id": text(),
            "source": text(),
            "polarity": text(),
            "line_index": np.int32,
            "speaker_name": text(),
            "history": tfds.features.Sequence(text()),
            "line": text(),
            "label": tfds.features.ClassLabel(names=LABEL_NAMES),
        }
        if config == "line_to_line":
            extra["conflict_indices"] = tfds.features.Sequence(np.int32)
    return tfds.features.FeaturesDict({**common, **extra})


class ConsistentLlms(tfds.core.GeneratorBasedBuilder):
    """The released persona-consistency dialogues, judged lines and probes, split by persona."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: Mapping[str, str] = {"1.0.0": "Labels, personas and probes, split by persona."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Set manual_dir to the folder of the paper's released data (consistent-LLMs), the one "
        "holding chatting/, education/ and therapy/."
    )
    BUILDER_CONFIGS: Sequence[tfds.core.BuilderConfig] = [
        tfds.core.BuilderConfig(name=name) for name in CONFIG_NAMES
    ]

    @tfds_utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS 4.9.10 finds a package builder's file through `importlib_resources`, a
        # backport it does not install on Python >= 3.9; the class's own file is the answer.
        return epath.Path(inspect.getfile(cls))

    def __init__(self, *, file_format: str = "array_record", **kwargs: Any) -> None:
        super().__init__(file_format=file_format, **kwargs)
        self.report: BuildReport | None = None

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=_features(self.builder_config.name),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[Example]]:
        examples, report = build_examples(Path(dl_manager.manual_dir), self.builder_config.name)
        self.report = report
        logger.info("%s/%s build report:\n%s", self.name, self.builder_config.name, report.format())
        return {split: self._generate_examples(items) for split, items in examples.items()}

    def _generate_examples(self, items: list[Example]) -> Iterator[Example]:  # type: ignore[override]
        yield from items


def build(
    manual_dir: Path, data_dir: Path, configs: Sequence[str] = CONFIG_NAMES
) -> dict[str, Counter[str]]:
    """Build the configs (a no-op for any already built) and return examples per split."""
    counts = {}
    download_config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    for config in configs:
        builder = ConsistentLlms(config=config, data_dir=str(data_dir))
        builder.download_and_prepare(download_config=download_config)
        counts[config] = Counter({s: info.num_examples for s, info in builder.info.splits.items()})
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manual_dir", type=Path, required=True, help="the released data folder")
    parser.add_argument("--data_dir", type=Path, required=True, help="where TFDS writes records")
    parser.add_argument("--configs", nargs="*", default=list(CONFIG_NAMES), choices=CONFIG_NAMES)
    args = parser.parse_args(argv)
    # Every config reads the same lines, so the reports differ only in examples per config.
    reports = [build_examples(args.manual_dir, config)[1] for config in args.configs]
    report = reports[0]
    for other in reports[1:]:
        report.examples.update(other.examples)
    for config, counts in build(args.manual_dir, args.data_dir, args.configs).items():
        print(f"{config}: " + ", ".join(f"{s} {counts[s]}" for s in SPLITS))
    print(report.format())


if __name__ == "__main__":
    main()
