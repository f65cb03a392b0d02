"""The persona-bank TFDS builder: bank splits kept, records faithful, rebuilds stable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import tensorflow_datasets as tfds

from persona_jax.data import persona_bank as bank
from persona_jax.data.tfds import persona_bank as pbt


def _build(data_dir: Path) -> dict[str, dict[str, list[dict]]]:
    out = {}
    for config in pbt.CONFIG_NAMES:
        builder = pbt.PersonaBank(config=config, data_dir=str(data_dir))
        builder.download_and_prepare()
        sources = builder.as_data_source()
        out[config] = {s: [src[i] for i in range(len(src))] for s, src in sources.items()}
    return out


@pytest.fixture(scope="module")
def expected() -> dict[str, list[bank.Persona]]:
    return {
        split: [p for role in bank.ROLES for p in bank.load_personas(role, split)]
        for split in bank.SPLITS
    }


def test_records_follow_the_bank_and_its_splits(
    tmp_path: Path, expected: dict[str, list[bank.Persona]]
) -> None:
    built = _build(tmp_path / "tfds")
    assert set(built["personas"]) == set(bank.SPLITS)
    for split, personas in expected.items():
        records = {r["id"].decode(): r for r in built["personas"][split]}
        assert set(records) == {p.id for p in personas}
        for persona in personas:
            record = records[persona.id]
            assert record["description"].decode() == persona.description
            assert record["role"].decode() == persona.role
            assert json.loads(record["facts_json"]) == persona.facts
            assert record["n_probes"] == len(persona.probes)
        probes = built["probes"][split]
        assert len(probes) == sum(len(p.probes) for p in personas)
        by_id = {p.id: p for p in personas}
        for record in probes:
            persona = by_id[record["persona_id"].decode()]
            options = [o.decode() for o in record["options"]]
            keyed = [p for p in persona.probes if p.question == record["question"].decode()]
            assert len(keyed) == 1 and tuple(options) == keyed[0].options
            assert options[record["answer"]] == keyed[0].keyed_option
    train = {r["id"] for r in built["personas"]["train"]}
    held_out = {r["id"] for r in built["personas"]["eval"]}
    assert train and held_out and not train & held_out
    probe_ids = {s: {r["persona_id"] for r in built["probes"][s]} for s in bank.SPLITS}
    assert probe_ids["train"] <= train and probe_ids["eval"] <= held_out


def test_rebuild_is_a_no_op_and_a_fresh_build_is_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "tfds"
    first = _build(data_dir)
    stamps = {p: p.stat().st_mtime_ns for p in data_dir.rglob("*") if p.is_file()}

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt although the output exists")

    with monkeypatch.context() as patch:
        patch.setattr(pbt, "bank_examples", refuse)
        assert _build(data_dir) == first
    assert stamps == {p: p.stat().st_mtime_ns for p in data_dir.rglob("*") if p.is_file()}
    shutil.rmtree(data_dir)
    assert _build(data_dir) == first
    source = tfds.data_source("persona_bank/probes", data_dir=str(data_dir), download=False)
    assert len(source["eval"]) == len(first["probes"]["eval"])


def test_a_changed_bank_is_not_silently_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "tfds"
    builder = pbt.PersonaBank(config="personas", data_dir=str(data_dir))
    builder.download_and_prepare()
    assert builder.built_fingerprint() == builder.fingerprint
    monkeypatch.setattr(pbt, "bank_fingerprint", lambda personas: "0" * 64)
    changed = pbt.PersonaBank(config="personas", data_dir=str(data_dir))
    with pytest.raises(pbt.StalePersonaBankError, match="another version of the persona bank"):
        changed.download_and_prepare()
