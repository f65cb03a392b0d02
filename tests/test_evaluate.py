"""evaluate.py: dialogue metrics end to end on tiny models, and the judge-agreement runner.

Everything here uses a tiny random policy and judge or a scripted LLM (a function of the
prompt, or a local fake OpenAI-compatible server), so expected numbers are known exactly.
The hand-made dialogues and personas are invented for these tests.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ml_collections import ConfigDict

from persona_jax.data.released import persona_id
from persona_jax.data.tfds.consistent_llms import split_of
from persona_jax.evaluation import agreement as agr
from persona_jax.evaluation import report
from persona_jax.evaluation.dialogues import EvalDialogue, read_dialogues, write_dialogues
from persona_jax.evaluation.judging import LLMLineJudge, Verdict
from persona_jax.evaluation.lines import LineContext
from persona_jax.evaluation.scoring import score_dialogues, speaker_scores

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-0123456789-do-not-write"
KEY_ENV = "PERSONA_JAX_TEST_JUDGE_KEY"
Messages = list[dict[str, str]]


def _config(name: str, **changes: Any) -> ConfigDict:
    sys.path.insert(0, str(ROOT))
    module = __import__(f"configs.{name}", fromlist=["get_config"])
    c = module.get_config()
    for key, value in changes.items():
        node = c
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return c


class ScriptedBackend:
    """Replies by which scripted key occurs in the judged line (the text after 'says:')."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies
        self.calls = 0

    def complete(self, batch: list[Messages]) -> list[str]:
        self.calls += 1
        return [self._reply(m[-1]["content"]) for m in batch]

    def _reply(self, prompt: str) -> str:
        judged = prompt.split("says:")[-1] if "says:" in prompt else prompt
        hits = [v for k, v in self.replies.items() if k in judged]
        assert len(hits) == 1, judged
        return hits[0]


# ----------------------------------------------------------------------- agreement


def _ctx(persona: str, texts: list[str], role: str = "patient") -> LineContext:
    speakers = tuple(1 if k % 2 == 0 else 2 for k in range(len(texts)))
    roles = {1: "therapist", 2: role} if role == "patient" else {1: "teacher", 2: role}
    return LineContext(persona, roles, speakers, tuple(texts))


def _labelled(ctx: LineContext, task: str, p2l: int | None, l2l: int | None):
    return agr.LabelledContext(ctx, task, "hand", f"d{ctx.index}", "test", p2l, l2l)


def test_agreement_runner_has_the_hand_computed_kappa() -> None:
    persona = "I am Ilse, a retired ferry captain from Kiel with three grandchildren."
    student = "I am Tomek, a 9th grader who learns best by drawing diagrams."
    # Prompt-to-line: (tag in the line, stored label, scripted judge verdict).
    p2l = [
        ("alpha", 1, "YES"),
        ("bravo", 1, "NO"),
        ("charlie", 0, "NO"),
        ("delta", 0, "NO"),
        ("echo", 0, "YES"),
        ("foxtrot", 1, "YES"),
        ("golf", 0, None),  # unreadable output: left out, counted
    ]
    replies = {}
    lines = []
    for k, (tag, truth, said) in enumerate(p2l):
        text = f"Line {tag} about the sea."
        replies[tag] = "It fits.\nVERDICT: " + said if said else "I am not sure what to say."
        task, who = ("therapy", persona) if k < 4 else ("education", student)
        role = "patient" if k < 4 else "student"
        lines.append(_labelled(_ctx(who, ["Hello.", text], role), task, truth, None))
    # Line-to-line: line 3 of the patient after its line 1; the judge names earlier lines.
    l2l = [
        ("hotel", 1, "CONFLICTS: [1]"),  # names the patient's earlier line: conflict
        ("india", 1, "CONFLICTS: [0]"),  # names the therapist's line: not a conflict
        ("juliet", 0, "CONFLICTS: []"),
        ("kilo", 0, "CONFLICTS: [1]"),
    ]
    for tag, truth, said in l2l:
        texts = ["Hi.", f"My earlier words {tag}-0.", "Go on.", f"Now {tag} again."]
        replies[f"{tag} again"] = "Reasoning.\n" + said
        lines.append(_labelled(_ctx(persona, texts), "therapy", None, truth))

    class ByLine(ScriptedBackend):
        def _reply(self, prompt: str) -> str:
            if "CONFLICTS" in prompt:  # line-to-line request: key on the judged line
                judged = prompt.split("says:")[-1]
                return next(v for k, v in self.replies.items() if k in judged and "again" in k)
            return super()._reply(prompt)

    backend = ByLine(replies)
    judge = LLMLineJudge(backend, {"kind": "scripted"}, history_lines=4)
    verdicts = agr.judge_labelled(lines, judge, chunk_size=3, progress=False)
    table = agr.agreement(lines, verdicts)

    # Prompt-to-line overall: truth 1,1,0,0,0,1 vs judge 1,0,0,0,1,1: p_o = 4/6, p_e = 1/2.
    got = table["prompt_to_line"]["all"]
    assert got["n"] == 6 and got["n_unparsed"] == 1 and got["n_labelled"] == 7
    assert got["kappa"] == pytest.approx((4 / 6 - 0.5) / 0.5)
    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # Per task: therapy 1,1,0,0 vs 1,0,0,0 -> p_o 3/4, p_e 1/2*1/4 + 1/2*3/4 = 1/2.
    assert table["prompt_to_line"]["therapy"]["kappa"] == pytest.approx(0.5)
    assert table["prompt_to_line"]["education"]["n_unparsed"] == 1
    # Education: truth 0,1 vs judge 1,1 -> p_o 1/2, p_e 1/2, kappa 0. Within-task kappa:
    # (0.5 x 4 + 0 x 2) / 6 (here it happens to equal the pooled kappa).
    within = agr.within_task(table)["prompt_to_line"]
    assert within["kappa"] == pytest.approx(1 / 3) and within["n"] == 6
    assert within["groups"] == ["education", "therapy"] and within["undefined"] == []
    # Line-to-line: truth 1,1,0,0 vs judge 1,0,0,1 (index 0 is the other speaker's line).
    got = table["line_to_line"]["all"]
    assert got["n"] == 4 and got["n_unparsed"] == 0
    assert got["kappa"] == pytest.approx(0.0)
    assert [v.n_conflicts for v in verdicts[-4:]] == [1, 0, 0, 1]
    # Only labelled questions were asked: 7 prompt-to-line and 4 line-to-line requests.
    assert judge.stats.requests["prompt_to_line"] == 7
    assert judge.stats.requests["line_to_line"] == 4


def _persona_in(split: str, start: int = 0) -> str:
    for k in range(start, start + 10_000):
        text = f"I am test person number {k}, a lighthouse keeper who never learned to swim."
        if split_of(persona_id(text)) == split:
            return text
    raise AssertionError(f"no persona text lands in {split}")


def _released_dialogue(persona: str, verdicts: list[str], stored: float) -> dict[str, Any]:
    """A therapy dialogue: patient lines 1, 3, 5 judged with `verdicts`; line 3 conflicts
    with line 1 by the stored line-to-line verdict."""
    return {
        "task_name": "Therapy",
        "P1": "",
        "P2": persona,
        "pturn": 1,
        "conversation": [
            [0, "Therapist: What brings you here?"],
            [1, "Patient: The lighthouse, mostly."],
            [2, "Therapist: Tell me more."],
            [3, "Patient: I have never seen the sea."],
            [4, "Therapist: I see."],
            [5, "Patient: Nights are long."],
        ],
        "eval_prompt_consistency": [[i, v] for i, v in zip((1, 3, 5), verdicts, strict=True)],
        "eval_index_consistency": [[3, "[1]"], [5, "[]"]],
        "P2_prompt_consistency_score": stored,
    }


class _PersonaWordJudge:
    """A line is inconsistent unless its last word appears in the persona (ignores history)."""

    name = "persona-word"

    def judge(self, contexts, ask_p2l, ask_l2l):
        from persona_jax.evaluation.judging import Verdict

        out = []
        for c, a_p, _ in zip(contexts, ask_p2l, ask_l2l, strict=True):
            word = c.texts[-1].rstrip(".").split()[-1]
            out.append(Verdict(inconsistent=(word not in c.persona) if a_p else None))
        return out

    def describe(self):
        return {"kind": "test"}


def test_swap_control_measures_how_much_verdicts_depend_on_the_persona() -> None:
    a, b = "I sail ferries.", "I grow tulips."
    c = "I teach chess."  # the only education persona: its lines cannot be swapped
    lines = [
        _labelled(_ctx(a, ["Hello.", "I love ferries."]), "therapy", 0, None),
        _labelled(_ctx(a, ["Hello.", "I love tulips."]), "therapy", 1, None),
        _labelled(_ctx(b, ["Hello.", "I love tulips."]), "therapy", 0, None),
        _labelled(_ctx(b, ["Hello.", "Fine."]), "therapy", None, 0),  # no p2l label
        _labelled(_ctx(c, ["Hello.", "I love chess."], "student"), "education", 0, None),
    ]
    swapped = agr.swap_personas(lines)
    assert [i for i, _ in swapped] == [0, 1, 2, 3]  # education has one persona
    assert [s.context.persona for _, s in swapped] == [b, b, a, a]
    assert all(s.context.texts == lines[i].context.texts for i, s in swapped)

    judge = _PersonaWordJudge()
    verdicts = agr.judge_labelled(lines, judge, progress=False)
    table = agr.swap_control(lines, verdicts, judge, progress=False)
    # Real pairs: consistent, inconsistent, consistent; swapped: inconsistent, consistent,
    # inconsistent.
    assert table["all"] == {
        "n": 3, "stored_rate": 1 / 3, "real_rate": 1 / 3, "swapped_rate": 2 / 3
    }  # fmt: skip
    assert set(table) == {"all", "therapy"}


def test_load_labelled_keeps_one_split_and_leaves_out_doubtful_files(tmp_path: Path) -> None:
    test_p, train_p = _persona_in("test"), _persona_in("train")
    folder = tmp_path / "therapy" / "exp" / "dialogues"
    folder.mkdir(parents=True)
    # Verdicts NO, YES, NO: 2/3 consistent if YES means "contradicts", 1/3 otherwise.
    fine = [_released_dialogue(p, ["NO", "YES", "NO"], 2 / 3) for p in (test_p, train_p)]
    doubtful = [_released_dialogue(test_p, ["NO", "YES", "NO"], 1 / 3)]
    (folder / "a.json").write_text(json.dumps(fine))
    (folder / "b.json").write_text(json.dumps(doubtful))

    lines, rep = agr.load_labelled(tmp_path, split="test")
    assert rep.excluded_sources == ["therapy/exp/dialogues/b.json"]
    assert rep.excluded_lines == 3
    assert {x.source for x in lines} == {"therapy/exp/dialogues/a.json"}
    assert [x.context.persona for x in lines] == [test_p] * 3
    assert [x.label_p2l for x in lines] == [0, 1, 0]
    assert [x.label_l2l for x in lines] == [None, 1, 0]
    assert lines[1].context.texts == ("What brings you here?", "The lighthouse, mostly.",
                                      "Tell me more.", "I have never seen the sea.")  # fmt: skip

    every, _ = agr.load_labelled(tmp_path, split="all", exclude_yes_consistent=False)
    assert len(every) == 9
    b_lines = [x for x in every if x.source.endswith("b.json")]
    assert [x.label_p2l for x in b_lines] == [1, 0, 1]  # YES = consistent there
    assert len(agr.sample_lines(every, 4, seed=1)) == 4
    with pytest.raises(ValueError, match="unknown split"):
        agr.load_labelled(tmp_path, split="dev")


# ------------------------------------------------------------------------- metrics


def test_speaker_scores_follow_the_metric_definitions() -> None:
    d = EvalDialogue(
        dialogue_id="x",
        source="hand",
        task="therapy",
        roles={1: "therapist", 2: "patient"},
        personas={1: "", 2: "I am Ilse, a retired ferry captain."},
        speakers=(1, 2, 1, 2, 1, 2),
        texts=("Hi.", "I sailed.", "And?", "I never sailed.", "Hm.", "Boats."),
        qa={2: (True, False, None)},
    )
    assert d.scored_speakers == (2,)
    contexts = d.contexts(2)
    verdicts = [
        Verdict(inconsistent=False, conflict=None),
        Verdict(inconsistent=True, conflict=True, n_conflicts=1),
        Verdict(inconsistent=None, p2l_unparsed=True, conflict=False, n_conflicts=0),
    ]
    s = speaker_scores(d, 2, contexts, verdicts)
    assert s.metrics["prompt_to_line"].score == 0.5
    assert s.metrics["prompt_to_line"].n_unparsed == 1
    assert s.metrics["line_to_line"].score == 0.5  # lines 3 and 5: one conflicts
    # Paper: 1 - (1 + 0) / (1 + 2) earlier lines.
    assert s.metrics["line_to_line_paper"].score == pytest.approx(2 / 3)
    assert s.metrics["qa"].score == 0.5 and s.metrics["qa"].n_unparsed == 1
    assert s.turns["prompt_to_line"] == [1.0, 0.0, None]
    assert s.turns["line_to_line"] == [None, 0.0, 1.0]


def test_confidence_intervals() -> None:
    values = [0.0, 1.0] * 50
    lo, hi = report.confidence_interval(values, method="normal")
    half = 1.959964 * math.sqrt(0.25 * 100 / 99) / 10
    assert (lo, hi) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-6)
    blo, bhi = report.confidence_interval(values, method="bootstrap", samples=4000)
    assert blo == pytest.approx(lo, abs=0.03) and bhi == pytest.approx(hi, abs=0.03)
    assert report.confidence_interval([0.3]) is None
    with pytest.raises(ValueError, match="unknown ci method"):
        report.confidence_interval(values, method="t")


# ------------------------------------------------------------- evaluate.py end to end

TINY = [
    "--config=configs/eval.py",
    "--config.tiny=True",
    "--config.distilled.random=True",
    "--config.num_dialogues=2",
    "--config.num_turns=2",
    "--config.run.episode.max_new_tokens=8",
    "--config.run.episode.partner_max_new_tokens=8",
    "--config.progress=False",
]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """evaluate.py on a tiny random policy and judge: 2 dialogues x 2 turns."""
    out = tmp_path_factory.mktemp("eval")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "evaluate.py", *TINY, f"--config.output_dir={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def test_evaluate_generates_scores_and_writes_reports(generated) -> None:
    out, final = generated
    assert final["judge"] == "distilled" and final["num_dialogues"] == 2
    assert final["num_lines_judged"] == 4  # 2 dialogues x 2 policy turns
    for metric in ("prompt_to_line", "line_to_line", "qa"):
        assert 0.0 <= final[metric] <= 1.0
    assert final["line_to_line_paper"] is None  # the distilled judge names no lines
    results = json.loads((out / "results.json").read_text())
    group = results["summary"]["therapy/patient"]
    assert group["prompt_to_line"]["n"] == 2 and group["prompt_to_line"]["n_lines_scored"] == 4
    assert group["line_to_line"]["n_lines_scored"] == 2  # only the second turn has a past
    assert group["qa"]["n_lines_scored"] == 4
    assert "bootstrap" in results["ci_method"]
    assert [p["turn"] for p in results["per_turn"]["therapy/patient"]["prompt_to_line"]] == [0, 1]
    md = (out / "results.md").read_text()
    assert "| therapy/patient | prompt_to_line |" in md and "95% CI" in md
    png = out / "turns_therapy_patient.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dialogues = read_dialogues(out / "dialogues.json")
    assert len(dialogues) == 2
    assert all(d.speakers == (1, 2, 1, 2) and d.roles[2] == "patient" for d in dialogues)
    assert all(len(d.qa[2]) == 2 for d in dialogues)


def test_rescoring_the_written_dialogues_gives_the_same_metrics(generated, tmp_path) -> None:
    """Mode (b) on mode (a)'s dialogues.json, same tiny judge: the same numbers."""
    from persona_jax.evaluation.run import run

    out, final = generated
    c = _config(
        "eval",
        tiny=True,
        dialogues_dir=str(out / "dialogues.json"),
        output_dir=str(tmp_path),
        progress=False,
        **{"distilled.random": True},
    )
    again = run(c)
    for key in ("prompt_to_line", "line_to_line", "qa", "num_lines_judged"):
        assert again[key] == final[key], key
    assert not (tmp_path / "dialogues.json").exists()  # read, not generated


class _FakeJudgeServer:
    """An OpenAI-compatible endpoint that answers by a function of the prompt and records
    the Authorization headers it got."""

    def __init__(self, reply: Callable[[str], str]) -> None:
        self.auth: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.auth.append(self.headers.get("Authorization", ""))
                content = reply(body["messages"][-1]["content"])
                message = {"role": "assistant", "content": content}
                data = json.dumps({"choices": [{"index": 0, "message": message}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def judge_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., _FakeJudgeServer]]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    servers: list[_FakeJudgeServer] = []

    def start(reply: Callable[[str], str]) -> _FakeJudgeServer:
        servers.append(_FakeJudgeServer(reply))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _therapy(k: int, lines: list[str]) -> EvalDialogue:
    return EvalDialogue(
        dialogue_id=f"hand#{k}",
        source="hand",
        task="therapy",
        roles={1: "therapist", 2: "patient"},
        personas={1: "", 2: f"I am Ilse {k}, a retired ferry captain from Kiel."},
        speakers=tuple(1 if i % 2 == 0 else 2 for i in range(len(lines))),
        texts=tuple(lines),
    )


def test_llm_judge_over_a_server_counts_unreadable_and_never_writes_the_key(
    judge_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from persona_jax.evaluation.run import run

    def reply(prompt: str) -> str:
        line = prompt.split("says:")[-1]
        if "CONFLICTS" in prompt:
            return "Line 3 denies line 1.\nCONFLICTS: [1]" if "never" in line else "CONFLICTS: []"
        if "mumble" in line:
            return "Hard to say."  # no verdict: unreadable
        return "VERDICT: YES" if "teacher" in line else "VERDICT: NO"

    server = judge_server(reply)
    monkeypatch.setenv(KEY_ENV, SECRET)
    data = tmp_path / "data"
    write_dialogues(
        [
            _therapy(
                0, ["Hi.", "I sailed ferries.", "And now?", "I never sailed.", "Ok.", "mumble"]
            ),
            _therapy(1, ["Hello.", "I was a teacher.", "Right.", "Kiel is home."]),
        ],
        data / "hand.json",
    )
    out = tmp_path / "out"
    c = _config(
        "eval",
        dialogues_dir=str(data),
        output_dir=str(out),
        judge="llm",
        progress=False,
        **{"llm.base_url": server.base_url, "llm.model": "judge-7b", "llm.api_key_env": KEY_ENV},
    )
    final = run(c)
    assert server.auth and all(a == f"Bearer {SECRET}" for a in server.auth)
    # Dialogue 0: lines 1, 3 consistent, line 5 unreadable -> 1.0; dialogue 1: 1 of 2 -> 0.5.
    assert final["prompt_to_line"] == pytest.approx(0.75)
    assert final["unparsed_prompt_to_line"] == 1
    # Line-to-line: dialogue 0 line 3 conflicts, line 5 does not -> 0.5; dialogue 1 -> 1.0.
    assert final["line_to_line"] == pytest.approx(0.75)
    # Paper: dialogue 0: 1 - 1 / (1 + 2) = 2/3; dialogue 1: 1.0.
    assert final["line_to_line_paper"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert final["qa"] is None  # hand-made dialogues carry no Q&A
    results = json.loads((out / "results.json").read_text())
    assert results["judge_stats"]["judge/prompt_to_line/unparsed"] == 1
    assert results["judge"]["api_key_env"] == KEY_ENV
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert "unparsed" in (out / "results.md").read_text()


def test_agreement_mode_end_to_end_on_hand_made_files(
    judge_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from persona_jax.evaluation.run import run

    folder = tmp_path / "data" / "therapy" / "exp" / "dialogues"
    folder.mkdir(parents=True)
    persona = _persona_in("test")
    (folder / "a.json").write_text(
        json.dumps([_released_dialogue(persona, ["NO", "YES", "NO"], 2 / 3)])
    )

    # The judge says YES only for "never seen": agrees on every prompt-to-line label, and
    # names line 1 for line 3 (agrees) and nothing for line 5 (agrees).
    def reply(prompt: str) -> str:
        never = "never seen" in prompt.split("says:")[-1]
        if "CONFLICTS" in prompt:
            return "CONFLICTS: [1]" if never else "CONFLICTS: []"
        return "VERDICT: YES" if never else "VERDICT: NO"

    server = judge_server(reply)
    monkeypatch.setenv(KEY_ENV, SECRET)
    c = _config(
        "judge_agreement",
        data_dir=str(tmp_path / "data"),
        output_dir=str(tmp_path / "out"),
        judge="llm",
        progress=False,
        **{"llm.base_url": server.base_url, "llm.model": "m", "llm.api_key_env": KEY_ENV},
    )
    final = run(c)
    assert final["kappa_prompt_to_line"] == pytest.approx(1.0)
    assert final["kappa_line_to_line"] == pytest.approx(1.0)
    assert (final["n_prompt_to_line"], final["n_line_to_line"], final["n_lines"]) == (3, 2, 3)
    verdicts = (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()
    assert len(verdicts) == 3
    assert "| prompt_to_line | all | 3 |" in (tmp_path / "out" / "results.md").read_text()


def test_bad_judge_name_is_refused(tmp_path: Path) -> None:
    from persona_jax.evaluation.factory import EvalConfigError
    from persona_jax.evaluation.run import run

    data = tmp_path / "d.json"
    write_dialogues([_therapy(0, ["Hi.", "Hello."])], data)
    c = _config("eval", dialogues_dir=str(data), output_dir=str(tmp_path / "o"), judge="gpt")
    with pytest.raises(EvalConfigError, match="judge='gpt'"):
        run(c)


def test_unscored_speakers_and_no_persona_are_skipped() -> None:
    d = _therapy(0, ["Hi.", "Hello."])
    judge = LLMLineJudge(ScriptedBackend({"Hello": "VERDICT: NO"}), {"kind": "x"}, 2)
    units = score_dialogues([d], judge, progress=False)
    assert [(u.role, u.metrics["prompt_to_line"].score) for u in units] == [("patient", 1.0)]
    assert units[0].metrics["line_to_line"].score is None  # one line: nothing to conflict with


def test_policy_from_a_training_checkpoint_and_base_mismatch(tmp_path: Path) -> None:
    """A train.py-style checkpoint is read back as the policy; a base that differs from the
    one it was trained from is refused before anything is generated."""
    import dataclasses

    import jax
    import numpy as np

    from persona_jax.checkpoint import Checkpointer
    from persona_jax.evaluation.factory import EvalConfigError, load_base
    from persona_jax.evaluation.run import run
    from persona_jax.evaluation.sources import load_model_source

    try:
        base = load_base("", tiny=True, seed=0)
    except Exception as err:  # the tiny model borrows the asset's tokenizer
        pytest.skip(f"no default asset: {err}")
    policy = jax.tree.map(lambda x: np.asarray(x) + 0.5, base.params)
    ckpt = Checkpointer(tmp_path / "run" / "checkpoints", async_save=False)
    meta = {
        "config": {"model": {"tiny": True, "path": ""}},
        "model": dataclasses.asdict(base.config),
    }
    ckpt.save(3, {"params": {"policy": policy}}, meta=meta)

    source = load_model_source(tmp_path / "run")
    assert source.description.endswith("step 3") and source.base_tiny
    assert source.config == base.config
    flat = zip(jax.tree.leaves(source.params), jax.tree.leaves(policy), strict=True)
    assert all(np.array_equal(a, b) for a, b in flat)

    c = _config("eval", policy=str(tmp_path / "run"), output_dir=str(tmp_path / "o"))
    with pytest.raises(EvalConfigError, match="trained from the tiny random base"):
        run(c)


@pytest.mark.slow
def test_shipped_judge_agreement_matches_its_training_report() -> None:
    """The shipped judge scored from text by this runner on the held-out test personas of one
    task (education, the smallest) reproduces the test agreement its training recorded from
    cached features: same lines, same layout, same thresholds (the cached features are
    float16, hence the tolerance)."""
    from persona_jax.data.paths import consistent_llms_dir
    from persona_jax.evaluation.factory import distilled_judge, load_base

    shipped = ROOT / "persona_jax" / "judges" / "shipped"
    if not (shipped / "metrics.json").is_file():
        pytest.skip("no shipped judge with a training report")
    report_ = json.loads((shipped / "metrics.json").read_text())
    recorded = report_.get("judge", {}).get("test", {}).get("education")
    if not recorded:
        pytest.skip("the shipped judge's report has no per-task test metrics")
    data = consistent_llms_dir()
    if not data.is_dir():
        pytest.skip(f"released data not found at {data}")
    lines, _ = agr.load_labelled(data, split="test")
    lines = [x for x in lines if x.task == "education"]
    c = _config("judge_agreement", **{"distilled.path": str(shipped)})
    judge = distilled_judge(c.distilled, load_base("", tiny=False, seed=0), seed=0)
    table = agr.agreement(lines, agr.judge_labelled(lines, judge, progress=False))
    for kind in ("prompt_to_line", "line_to_line"):
        got, want = table[kind]["education"], recorded[kind]
        assert got["n"] == want["n"], kind
        assert got["accuracy"] == pytest.approx(want["accuracy"], abs=0.02), kind
        if want["kappa"] is None or math.isnan(want["kappa"]):  # undefined: one class only
            assert got["kappa"] is None or math.isnan(got["kappa"]), kind
        else:
            assert got["kappa"] == pytest.approx(want["kappa"], abs=0.03), kind


def test_token_budget_groups_bound_rows_times_length() -> None:
    from persona_jax.evaluation.judging import token_budget_groups

    assert token_budget_groups([10, 10, 10, 50, 5], 40) == [[0, 1, 2], [3], [4]]
    assert token_budget_groups([5, 5, 5, 5], 10) == [[0, 1], [2, 3]]
    assert token_budget_groups([], 10) == []
