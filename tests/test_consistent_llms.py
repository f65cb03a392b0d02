"""The reader and the TFDS builder on the paper's released data.

The data is read from ``consistent_llms_dir()``. When CI names it
(``$PERSONA_JAX_CONSISTENT_LLMS_DIR``) and it is missing, these tests fail; when nobody named
it and the default location is empty, they skip. Builds go to ``tmp_path`` from a manual dir
of links to a few released files, so no data enters the repository.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import tensorflow_datasets as tfds

from persona_jax.data import paths
from persona_jax.data.release_labels import BuildReport, iter_labelled_lines, iter_probes
from persona_jax.data.released import (
    KINDS,
    Dialogue,
    find_dialogue_files,
    load_dialogues,
    persona_id,
)
from persona_jax.data.tfds import consistent_llms as cl
from persona_jax.metrics.consistency import PolarityError, release_speaker_scores, resolve_polarity

# Sanity bounds read off the data (see the printed report). Outputs without a YES/NO or a
# list are read when they state their verdict in unmixed words (persona_jax.metrics.
# verdicts), which leaves at most 1% unread, except in therapy line-to-line (1.3%): what is
# left there mixes a stated conflict with "no conflicting lines", holds two lists that
# disagree, or is degenerate, and must stay unread rather than be guessed.
MAX_UNPARSED = {
    ("chatting", "prompt_to_line"): 0.01,
    ("education", "prompt_to_line"): 0.01,
    ("therapy", "prompt_to_line"): 0.01,
    ("chatting", "line_to_line"): 0.01,
    ("education", "line_to_line"): 0.01,
    ("therapy", "line_to_line"): 0.015,
}
# Labels read from words are a small share of all labels (most are in the two
# Mistral-judged therapy files, whose judge often wrote "no conflicting lines" in prose).
MAX_READ_FROM_WORDS = 0.1
# The data's README: about 8,700 judged lines for prompt-to-line, about 8,000 line-to-line.
JUDGED_RANGE = {"prompt_to_line": (8_000, 9_500), "line_to_line": (7_000, 9_000)}
# Small files, one per task (the chat file holds Q&A probes), for the build tests.
SUBSET = (
    "chatting/exp/dialogues/mistral-instruct_0_10_727.json",
    "education/exp/dialogues/mistral-instruct_0_615.json",
    "therapy/exp/dialogues/mistral-instruct_0_261.json",
    "chatting/config_chatting_personas.json",
)


@pytest.fixture(scope="module")
def data_root() -> Path:
    root = paths.consistent_llms_dir()
    if not root.is_dir():
        if paths.consistent_llms_dir_is_explicit():
            pytest.fail(f"${paths.CONSISTENT_LLMS_ENV} names {root}, which does not exist")
        pytest.skip(f"released data not found at {root}")
    return root


@pytest.fixture(scope="module")
def released(data_root: Path) -> dict[str, list[Dialogue]]:
    files = find_dialogue_files(data_root)
    assert files, f"no dialogue files under {data_root}"
    return {
        path.relative_to(data_root).as_posix(): load_dialogues(path, root=data_root)
        for path in files
    }


@pytest.fixture(scope="module")
def report(data_root: Path) -> BuildReport:
    report = BuildReport()
    for path in find_dialogue_files(data_root):
        for _ in iter_labelled_lines(path, report=report, root=data_root):
            pass
        for _ in iter_probes(path, report=report, root=data_root):
            pass
    print(report.format())
    return report


def test_polarity_resolves_for_every_file(released: dict[str, list[Dialogue]]) -> None:
    polarity = {source: resolve_polarity(dialogues) for source, dialogues in released.items()}
    print(json.dumps(polarity, indent=1))
    # The README warns that polarity differs between file sets: both readings must occur.
    assert set(polarity.values()) == {"yes_inconsistent", "yes_consistent"}


def test_rescoring_reproduces_every_stored_score(released: dict[str, list[Dialogue]]) -> None:
    checked: Counter[str] = Counter()
    mismatches = []
    for source, dialogues in released.items():
        polarity = resolve_polarity(dialogues)
        for dialogue in dialogues:
            stored = {
                "prompt": dialogue.stored_prompt_scores,
                "index": dialogue.stored_index_scores,
                "qa": dialogue.stored_qa_scores,
            }
            for speaker in (1, 2):
                got = release_speaker_scores(dialogue, speaker, polarity)
                for metric, scores in stored.items():
                    if speaker in scores:
                        checked[metric] += 1
                        if abs(got[metric] - scores[speaker]) > 1e-9:
                            mismatches.append((source, dialogue.position, speaker, metric))
    print(dict(checked))
    assert not mismatches, mismatches[:10]
    n_dialogues = sum(len(d) for d in released.values())
    assert checked["prompt"] >= n_dialogues and checked["index"] >= n_dialogues
    assert checked["qa"] > 0


def test_counts_unparsed_rates_and_class_balance(report: BuildReport) -> None:
    tasks = sorted(report.dialogues)
    assert tasks == ["chatting", "education", "therapy"]
    for kind in KINDS:
        judged = sum(report.judged[(task, kind)] for task in tasks)
        low, high = JUDGED_RANGE[kind]
        assert low <= judged <= high, (kind, judged)
        for task in tasks:
            rate = report.unparsed_rate(task, kind)
            assert rate <= MAX_UNPARSED[(task, kind)], (task, kind, rate)
            n0, n1 = report.labels[(task, kind, 0)], report.labels[(task, kind, 1)]
            assert n0 + n1 == report.labelled[(task, kind)]
            assert 0.02 <= n1 / (n0 + n1) <= 0.6, (task, kind, n0, n1)
            skipped = sum(n for (t, k, _), n in report.skipped.items() if (t, k) == (task, kind))
            assert report.labelled[(task, kind)] + skipped == report.judged[(task, kind)]
    # The strict reading and the release's lenient one part ways on very few outputs.
    for key, n in report.differs_from_release.items():
        assert n <= 0.001 * report.labelled[key], (key, n)
    for key, n in report.read_from_words.items():
        assert n <= MAX_READ_FROM_WORDS * report.labelled[key], (key, n)
    assert report.probes["chatting"] > 0 and report.probes["therapy"] > 0


def test_lines_share_one_persona_per_speaker(data_root: Path) -> None:
    path = data_root / SUBSET[0]
    by_dialogue: dict[tuple[str, int], set[str]] = defaultdict(set)
    for line in iter_labelled_lines(path, root=data_root):
        by_dialogue[(line.dialogue_id, line.speaker)].add(line.persona_id)
        assert line.persona_id == persona_id(line.persona)
        assert len(line.history) == line.line_index
    assert by_dialogue and all(len(ids) == 1 for ids in by_dialogue.values())


def test_splits_are_disjoint_by_persona_and_dialogue(data_root: Path) -> None:
    split_of_persona: dict[str, set[str]] = defaultdict(set)
    split_of_dialogue: dict[str, set[str]] = defaultdict(set)
    sizes: Counter[tuple[str, str]] = Counter()
    for config in cl.CONFIG_NAMES:
        examples, _ = cl.build_examples(data_root, config)
        for split, items in examples.items():
            sizes[(config, split)] = len(items)
            for _, record in items:
                split_of_persona[record["persona_id"]].add(split)
                if "dialogue_id" in record:
                    split_of_dialogue[record["dialogue_id"]].add(split)
    print(dict(sizes))
    assert all(len(s) == 1 for s in split_of_persona.values())
    assert all(len(s) == 1 for s in split_of_dialogue.values())
    for config in cl.CONFIG_NAMES:
        total = sum(sizes[(config, s)] for s in cl.SPLITS)
        assert sizes[(config, "train")] > 0.6 * total, config
        assert all(sizes[(config, s)] > 0 for s in cl.SPLITS), config


def _subset_manual_dir(data_root: Path, tmp_path: Path) -> Path:
    manual = tmp_path / "manual"
    for relative in SUBSET:
        target = manual / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(data_root / relative)
    return manual


def _records(builder: cl.ConsistentLlms) -> dict[str, list[dict]]:
    sources = builder.as_data_source()
    return {split: [source[i] for i in range(len(source))] for split, source in sources.items()}


def test_builder_builds_reads_and_rebuilds_identically(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manual = _subset_manual_dir(data_root, tmp_path)
    data_dir = tmp_path / "tfds"
    download_config = tfds.download.DownloadConfig(manual_dir=str(manual))
    first: dict[str, dict[str, list[dict]]] = {}
    for config in cl.CONFIG_NAMES:
        builder = cl.ConsistentLlms(config=config, data_dir=str(data_dir))
        builder.download_and_prepare(download_config=download_config)
        assert builder.report is not None
        expected, _ = cl.build_examples(manual, config)
        first[config] = _records(builder)
        assert {s: len(r) for s, r in first[config].items()} == {
            s: len(expected[s]) for s in cl.SPLITS
        }
    labels = Counter(r["label"] for recs in first["prompt_to_line"].values() for r in recs)
    assert set(labels) == {0, 1}
    record = first["line_to_line"]["train"][0]
    assert isinstance(record["line"], bytes) and record["task"] in (
        b"chatting",
        b"education",
        b"therapy",
    )
    assert all(r["answer"] < len(r["options"]) for recs in first["qa"].values() for r in recs)

    # Built data is reused: a second build must not read the release again.
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt although the output exists")

    monkeypatch.setattr(cl, "build_examples", refuse)
    stamps = {p: p.stat().st_mtime_ns for p in data_dir.rglob("*") if p.is_file()}
    for config in cl.CONFIG_NAMES:
        cl.ConsistentLlms(config=config, data_dir=str(data_dir)).download_and_prepare(
            download_config=download_config
        )
    assert stamps == {p: p.stat().st_mtime_ns for p in data_dir.rglob("*") if p.is_file()}
    monkeypatch.undo()

    # Deleted and rebuilt: the same records in the same order.
    shutil.rmtree(data_dir)
    for config in cl.CONFIG_NAMES:
        builder = cl.ConsistentLlms(config=config, data_dir=str(data_dir))
        builder.download_and_prepare(download_config=download_config)
        assert _records(builder) == first[config], config
    # tfds.data_source finds the registered builder without TensorFlow.
    source = tfds.data_source("consistent_llms/qa", data_dir=str(data_dir), download=False)
    assert len(source["train"]) == len(first["qa"]["train"])


def test_cli_prints_the_report(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manual = _subset_manual_dir(data_root, tmp_path)
    cl.main(["--manual_dir", str(manual), "--data_dir", str(tmp_path / "out"), "--configs", "qa"])
    out = capsys.readouterr().out
    assert "qa: train" in out and "yes_consistent" in out and "unparsed" in out


def test_builder_refuses_a_file_of_unknown_polarity(tmp_path: Path) -> None:
    dialogue = {
        "task_name": "Therapy",
        "P1": "",
        "P2": "Rhea distrusts advice and answers in short, dry sentences.",
        "pturn": 1,
        "conversation": [[0, "Therapist: How was the week?"], [1, "Patient: Fine."]],
        "eval_prompt_consistency": [[1, "Short and dry, as expected. NO"]],
        # Neither reading gives 0.5 for one judged line.
        "P1_prompt_consistency_score": 0,
        "P2_prompt_consistency_score": 0.5,
        "eval_index_consistency": [],
        "P2_index_consistency_score": 0,
    }
    path = tmp_path / "therapy" / "exp" / "dialogues" / "made_up.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps([dialogue]), encoding="utf-8")
    with pytest.raises(PolarityError, match=r"made_up\.json"):
        cl.build_examples(tmp_path, "prompt_to_line")
