"""Bad input, one row per case: each must give a clear error naming the file/key/value, or a counted
and logged skip, never a silently wrong result or a traceback from deep inside.

Rows are grouped by where the input enters: data files (knowledge, ARC), generations, ARC self-edit
JSON, the inner update (non-finite loss, out of memory), the model path, LoRA ranks, the run files,
and the command line (its overrides and choices on the composed config and the checks a run makes
first; one `seal-run` subprocess for how an error reaches the console). Most need no model; the
inner-update rows use the 2-layer random model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import error_text, seal_run_error
from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig

from seal_runner.config import register_configs
from seal_runner.domains.arc.data import load_tasks
from seal_runner.domains.arc.selfedit import ParseError, parse_selfedit
from seal_runner.domains.knowledge.data import DataError, load_articles
from seal_runner.domains.knowledge.pipeline import sample_selfedits, train_adapters
from seal_runner.domains.knowledge.strategies import build_strategy
from seal_runner.engines.base import Completion, LoraAdapter
from seal_runner.engines.vllm_engine import VLLM_LORA_RANKS, check_adapter_rank, supported_lora_rank
from seal_runner.errors import InputError
from seal_runner.lora.trainer import InnerJob
from seal_runner.models import ModelPathError, load_tokenizer, resolve_model_path
from seal_runner.records import read_jsonl
from seal_runner.stages.common import check_devices
from seal_runner.stages.evaluate import check_conditions
from seal_runner.tracking import Tracker

# --- data files -----------------------------------------------------------------------------------

QUESTION = {"question": "What colour is the lamp?", "answer": "green"}
ARTICLE = {"title": "Varnholt Lighthouse", "context": "Its lamp is green.", "questions": [QUESTION]}

KNOWLEDGE_FILES = {
    "missing file": (None, "no such data file (domain.data_path)"),
    "empty file": ("", "invalid JSON at line 1 column 1"),
    "invalid JSON": ('[{"title": "x",', "invalid JSON at line 1"),
    "not UTF-8": (b"\xff\xfe[]", "not UTF-8 text"),
    "object instead of list": (ARTICLE, "expected a JSON list of articles, got dict"),
    "empty list": ([], "the selection start=0 n=-1 is empty (0 articles)"),
    "item not an object": (["text"], "item 0: expected an object, got str"),
    "wrong key name": (
        [{"title": "T", "passage": "c", "questions": [QUESTION]}],
        "item 0: missing key 'context'",
    ),
    "context wrong type": ([{**ARTICLE, "context": ["a", "b"]}], "key 'context' must be a string, got list"),
    "empty context": ([{**ARTICLE, "context": "  \n"}], "item 0: key 'context' is empty"),
    "title wrong type": ([{**ARTICLE, "title": 7}], "key 'title' must be a string, got int"),
    "no questions key": ([{"title": "T", "context": "c"}], "key 'questions' must be a non-empty list"),
    "no questions": ([{**ARTICLE, "questions": []}], "key 'questions' must be a non-empty list"),
    "question not an object": (
        [{**ARTICLE, "questions": ["why?"]}],
        "question 0: expected an object, got str",
    ),
    "answer wrong type": (
        [{**ARTICLE, "questions": [{"question": "q", "answer": 3}]}],
        "question 0: key 'answer' must be a string, got int",
    ),
    "question missing": ([{**ARTICLE, "questions": [{"answer": "a"}]}], "question 0: missing key 'question'"),
}


def write_data(path: Path, content) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_text(json.dumps(content))
    return path


@pytest.mark.parametrize(("content", "message"), KNOWLEDGE_FILES.values(), ids=KNOWLEDGE_FILES.keys())
def test_knowledge_data_file(tmp_path: Path, content, message: str) -> None:
    path = write_data(tmp_path / "data.json", content)
    with pytest.raises(DataError) as err:
        load_articles(str(path))
    assert message in str(err.value) and str(path) in str(err.value)


GOOD_ARC = {"train": [{"input": [[1, 2]], "output": [[2, 1]]}], "test": [{"input": [[3, 4]]}]}
ARC_FILES = {
    "missing file": (None, "no such ARC data file"),
    "invalid JSON": ("{not json", "invalid JSON"),
    "not UTF-8": (b"\xff{}", "not UTF-8 text"),
    "list instead of object": ([GOOD_ARC], "expected a JSON object of task id -> task, got list"),
    "no tasks": ({}, "no tasks in the file"),
    "ragged rows": (
        {"t1": {**GOOD_ARC, "train": [{"input": [[1, 2], [3]], "output": [[1]]}]}},
        "task t1: train[0].input: ragged rows (row 0 has 2 cells, row 1 has 1)",
    ),
    "colour 10": (
        {"t1": {**GOOD_ARC, "test": [{"input": [[3, 10]]}]}},
        "task t1: test[0].input: cell (0, 1) is 10, expected an integer colour 0-9",
    ),
    "negative colour": (
        {"t1": {**GOOD_ARC, "train": [{"input": [[1]], "output": [[-1]]}]}},
        "train[0].output: cell (0, 0) is -1",
    ),
    "float colour": ({"t1": {**GOOD_ARC, "test": [{"input": [[1.5]]}]}}, "cell (0, 0) is 1.5"),
    "empty grid": ({"t1": {**GOOD_ARC, "test": [{"input": []}]}}, "expected a non-empty list of rows"),
    "no train": ({"t1": {"test": GOOD_ARC["test"]}}, "task t1: 'train' must be a non-empty list"),
    "demo without output": (
        {"t1": {**GOOD_ARC, "train": [{"input": [[1]]}]}},
        "task t1: train[0] has no 'output' grid",
    ),
}


@pytest.mark.parametrize(("content", "message"), ARC_FILES.values(), ids=ARC_FILES.keys())
def test_arc_data_file(tmp_path: Path, content, message: str) -> None:
    path = write_data(tmp_path / "challenges.json", content)
    with pytest.raises(ValueError) as err:
        load_tasks(path)
    assert message in str(err.value) and "challenges.json" in str(err.value)


def test_arc_solutions_of_the_wrong_count(tmp_path: Path) -> None:
    challenges = write_data(tmp_path / "c.json", {"t1": GOOD_ARC})
    solutions = write_data(tmp_path / "s.json", {"t1": [[[1]], [[2]]]})
    with pytest.raises(ValueError, match=r"s.json: task t1: expected a list of 1 solution grid\(s\), got 2"):
        load_tasks(challenges, solutions)


# --- generations and self-edits (real config, scripted completions) ------------------------------


@pytest.fixture(scope="module")
def compose_cfg() -> Callable[..., DictConfig]:
    register_configs()
    with initialize_config_module(config_module="seal_runner.conf", version_base="1.3"):
        yield lambda *overrides: compose(config_name="config", overrides=["logger=none", *overrides])


class ScriptedEngine:
    """The Engine protocol with fixed completions: the input under test is what the model wrote."""

    def __init__(self, completions: list[Completion]) -> None:
        self.completions = completions

    def generate(self, prompts, sampling, adapters=None, seeds=None) -> list[Completion]:
        assert len(prompts) == len(self.completions)
        return self.completions

    def close(self) -> None:
        pass


GENERATIONS = {
    "empty": (Completion("", 0, "stop"), "empty"),
    "whitespace only": (Completion(" \n\n ", 3, "stop"), "empty"),
    # One endless line cut at max_tokens: dropping the unfinished line (domain.drop_cut_line) leaves nothing.
    "endless (cut at max_tokens)": (Completion("1. The lamp is green and " * 40, 160, "length"), "empty"),
    "cut mid-line after whole lines": (
        Completion("The lamp is green.\nThe tower is tall.\nIt was built in 18", 20, "length"),
        "truncated",
    ),
}


@pytest.mark.parametrize(("completion", "status"), GENERATIONS.values(), ids=GENERATIONS.keys())
def test_bad_generation_is_recorded_counted_and_logged(compose_cfg, tmp_path, caplog, completion, status):
    cfg = compose_cfg()
    articles = load_articles(cfg.domain.data_path, 0, 1)
    with caplog.at_level(logging.WARNING):
        edits = sample_selfedits(
            cfg, ScriptedEngine([completion]), str, articles, 1, tmp_path / "e.jsonl", "t"
        )
    (record,) = edits.values()
    assert record["status"] == status
    a = articles[0]
    assert record["sequences"][-1] == f"{a.title}\n{a.context}"  # the passage is still trained on
    assert f"{int(status == 'empty')} are empty and {int(status == 'truncated')} truncated" in caplog.text


def test_selfedit_without_training_sequences_is_a_counted_failed_job(compose_cfg, tmp_path, caplog):
    """append_passage off + an empty self-edit: nothing to train on; the job fails with a reason."""
    cfg = compose_cfg("domain.append_passage=false")
    articles = load_articles(cfg.domain.data_path, 0, 2)
    engine = ScriptedEngine([Completion("", 0, "stop"), Completion("The lamp is green.", 6, "stop")])
    edits = sample_selfedits(cfg, engine, str, articles, 1, tmp_path / "e.jsonl", "t")
    assert edits[(0, 0)]["sequences"] == [] and edits[(1, 0)]["sequences"]
    jobs = [InnerJob("c0", edits[(0, 0)]["sequences"], 1)]
    with caplog.at_level(logging.WARNING):
        updates = train_adapters(cfg, "unused", None, jobs, tmp_path / "u.jsonl", tmp_path / "a", None)
    assert updates["c0"] == {
        "key": "c0",
        "failed": "self-edit produced no training sequences",
        "adapter": None,
    }
    assert read_jsonl(tmp_path / "u.jsonl") == [updates["c0"]]
    assert "c0 skipped: its self-edit produced no training sequences" in caplog.text


ARC_SELFEDITS = {
    "prose, no JSON": ("I would rotate the grids.", "no JSON object in the text"),
    "truncated JSON": ('{"data_generation": {"use_basic_augmentations": tr', "truncated or invalid"),
    "section not an object": (
        '{"data_generation": [], "training": {}}',
        "'data_generation' must be an object",
    ),
    "flag not a bool": (
        '{"data_generation": {"use_basic_augmentations": "yes"}}',
        "data_generation.use_basic_augmentations must be true or false, got 'yes'",
    ),
    "rate not a number": (
        '{"training": {"learning_rate": "fast"}}',
        "training.learning_rate must be a number",
    ),
    "rate out of range": ('{"training": {"learning_rate": 5}}', "training.learning_rate must be in (0, 1]"),
    "epochs not an integer": ('{"training": {"num_train_epochs": 2.5}}', "must be an integer, got 2.5"),
    "too many epochs": ('{"training": {"num_train_epochs": 1000}}', "must be in 0..100, got 1000"),
}


@pytest.mark.parametrize(("text", "reason"), ARC_SELFEDITS.values(), ids=ARC_SELFEDITS.keys())
def test_invalid_arc_selfedit_says_why(text: str, reason: str) -> None:
    parsed = parse_selfedit(text)
    assert isinstance(parsed, ParseError) and reason in parsed.reason


# --- the inner update -----------------------------------------------------------------------------

SEQUENCES = [
    "Varnholt Lighthouse\nIt was first lit in 1872.",
    "Varnholt Lighthouse\nIts lamp is green and can be seen from the harbour.",
    "Varnholt Lighthouse\nThe keeper rows out every morning.",
]


def inner_update(compose_cfg, tiny_model_dir: Path, tmp_path: Path, *overrides: str) -> dict[str, dict]:
    cfg = compose_cfg(
        "lora.rank=4",
        "lora.alpha=8",
        "lora.batch_size=3",
        "lora.epochs=2",
        "lora.adapters_per_batch=2",
        *overrides,
    )
    jobs = [InnerJob(f"j{i}", SEQUENCES, seed=i) for i in range(2)]
    tokenizer = load_tokenizer(str(tiny_model_dir))
    tracker = Tracker(cfg, tmp_path)
    return train_adapters(
        cfg, str(tiny_model_dir), tokenizer, jobs, tmp_path / "u.jsonl", tmp_path / "adapters", tracker
    )


def test_non_finite_loss_marks_the_edit_failed_with_the_reason(compose_cfg, tiny_model_dir, tmp_path):
    """lr 1e30 sends the adapter weights to inf after the first of two steps; the second loss is not
    finite."""
    updates = inner_update(compose_cfg, tiny_model_dir, tmp_path, "lora.lr=1e30")
    for record in updates.values():
        assert record["failed"].startswith("non-finite loss at step"), record
        assert record["adapter"] is None
    assert {r["key"] for r in read_jsonl(tmp_path / "u.jsonl")} == {"j0", "j1"}


@pytest.fixture
def forward_token_budget(monkeypatch) -> Callable[[int], None]:
    """Make every forward pass of more than `budget` padded tokens raise CUDA's out-of-memory error."""
    from transformers.models.llama.modeling_llama import LlamaForCausalLM

    forward = LlamaForCausalLM.forward

    def install(budget: int) -> None:
        def limited(self, input_ids=None, **kwargs):
            if input_ids is not None and input_ids.numel() > budget:
                raise torch.OutOfMemoryError(
                    f"CUDA out of memory. Tried to allocate {input_ids.numel()} tokens"
                )
            return forward(self, input_ids=input_ids, **kwargs)

        monkeypatch.setattr(LlamaForCausalLM, "forward", limited)

    return install


def test_out_of_memory_retries_with_smaller_forward_passes(
    compose_cfg, tiny_model_dir, tmp_path, caplog, forward_token_budget
):
    """A forward over the budget runs out of memory; the update must retry smaller and succeed."""
    reference = inner_update(compose_cfg, tiny_model_dir, tmp_path / "ref")
    budget = max(len(load_tokenizer(str(tiny_model_dir))(s)["input_ids"]) for s in SEQUENCES) + 2
    forward_token_budget(budget)
    with caplog.at_level(logging.WARNING):
        updates = inner_update(compose_cfg, tiny_model_dir, tmp_path / "oom")
    assert "out of memory" in caplog.text.lower()
    for key, record in reference.items():
        assert updates[key]["failed"] is None
        assert updates[key]["final_loss"] == pytest.approx(record["final_loss"], rel=1e-4)


def test_out_of_memory_at_the_smallest_batch_is_a_clear_message(
    compose_cfg, tiny_model_dir, tmp_path, forward_token_budget
):
    forward_token_budget(1)
    try:
        updates = inner_update(compose_cfg, tiny_model_dir, tmp_path)
        message = " ".join(str(r["failed"]) for r in updates.values())
    except Exception as exc:  # a clear error is as good as failed records with the reason
        message = str(exc)
    assert "out of memory" in message.lower()
    assert "max_tokens_per_forward" in message or "adapters_per_batch" in message, message


# --- model path and LoRA rank ---------------------------------------------------------------------


MODEL_PATHS = {
    "absolute path missing": (
        lambda d: str(d / "no-such-model"),
        "looks like a local path but does not exist",
    ),
    "not a checkpoint dir": (lambda d: str(d), "is not a Hugging Face checkpoint directory (no config.json"),
    "relative path typo": (lambda d: "outputs/policy", "looks like a local path but does not exist"),
    "hub id offline, not cached": (
        lambda d: "nobody-org/no-such-model-xyz",
        "is not in the Hugging Face cache, and the hub is offline",
    ),
}


@pytest.mark.parametrize(("spec", "message"), MODEL_PATHS.values(), ids=MODEL_PATHS.keys())
def test_model_path_that_does_not_exist(tmp_path, monkeypatch, spec, message) -> None:
    (tmp_path / "outputs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = spec(tmp_path)
    with pytest.raises(ModelPathError) as err:
        resolve_model_path(name)
    assert message in str(err.value) and f"model.name_or_path={name!r}" in str(err.value)


@pytest.mark.parametrize(("rank", "served"), [(4, 8), (12, 16), (200, 256), (512, 512)])
def test_lora_rank_vllm_lacks_is_rounded_up(rank: int, served: int) -> None:
    assert supported_lora_rank(rank) == served


@pytest.mark.parametrize(("rank", "message"), [(1024, "exceeds"), (0, "positive integer"), (-8, "positive")])
def test_lora_rank_vllm_cannot_serve_names_the_allowed_values(rank: int, message: str) -> None:
    with pytest.raises(ValueError) as err:
        supported_lora_rank(rank)
    assert message in str(err.value) and str(VLLM_LORA_RANKS) in str(err.value)


def test_adapter_above_the_engine_rank_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 32}))
    check_adapter_rank(LoraAdapter("ok", str(tmp_path)), 32)
    with pytest.raises(
        ValueError, match=r"rank 32 but the engine serves at most 16: set engine.max_lora_rank"
    ):
        check_adapter_rank(LoraAdapter("round_0/c0000-s0-i0", str(tmp_path)), 16)


# --- run files ------------------------------------------------------------------------------------


def test_unreadable_jsonl_lines_are_counted_and_skipped(tmp_path: Path, caplog) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"k": 1}\n[1, 2]\n{"k": 2, "text": "caf\xc3')  # not an object; torn mid-character
    with caplog.at_level(logging.WARNING):
        assert read_jsonl(path) == [{"k": 1}]
    assert "skipped 2 unreadable line(s)" in caplog.text


def test_line_separator_characters_inside_a_record_do_not_split_it(tmp_path: Path) -> None:
    """JSON leaves U+2028, U+0085 and U+001E-style separators unescaped with ensure_ascii=False."""
    from seal_runner.records import append_jsonl

    record = {"text": "a\u2028b\x85c\u2029d\x1ce\x0bf"}
    append_jsonl(tmp_path / "r.jsonl", [record, {"k": 2}])
    assert read_jsonl(tmp_path / "r.jsonl") == [record, {"k": 2}]


# --- the command line -----------------------------------------------------------------------------

OVERRIDES = {
    "typo in a key": (["lora.rnak=8"], ["lora.rnak"]),
    "wrong type": (["lora.rank=big"], ["lora.rank", "'big'", "could not be converted to Integer"]),
    "unknown option": (["engine=nope"], ["engine/nope", "vllm"]),
}


@pytest.mark.parametrize(("args", "fragments"), OVERRIDES.values(), ids=OVERRIDES.keys())
def test_invalid_override_names_the_key(compose_cfg, args, fragments) -> None:
    """Composition fails naming the key; `seal-run` prints Hydra's message without a traceback
    (tests/test_choices.py runs it on a typo)."""
    with pytest.raises(HydraException) as info:
        compose_cfg(*args)
    text = error_text(info.value)
    for fragment in fragments:
        assert fragment in text, text


@pytest.mark.integration
def test_bad_data_file_on_the_command_line_is_one_line_without_a_traceback(tmp_path, tiny_model_dir) -> None:
    """An InputError raised inside a stage (here the data file, read after the model's tokenizer)
    reaches the console as one `seal-run: <message>` line (cli.py), with no traceback."""
    bad = write_data(tmp_path / "bad.json", [{"title": "T", "questions": [QUESTION]}])
    out = seal_run_error(
        f"model.name_or_path={tiny_model_dir}",
        "engine=hf",
        "engine@qa_engine=hf",
        "logger=none",
        f"domain.data_path={bad}",
        "stage=evaluate",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert f"{bad}: item 0: missing key 'context'" in out, out
    assert f"seal-run: {bad}: item 0: missing key 'context'" in out.splitlines(), out


def continual_strategy(cfg: DictConfig) -> None:
    """What stage=continual builds from its config before its first sequence."""
    c = cfg.continual
    build_strategy(c.strategy, c.replay_sequences, c.candidates, c.retention_lambda)


# overrides, the check that stops the run (None: composition does), fragments of the message
CHOICES = {
    "unknown reward": (
        ["stage=restem", "restem.reward=oracle"],
        None,
        ["restem.reward", "Invalid value 'oracle', expected one of [inner, likelihood, proxy, solved]"],
    ),
    "unknown strategy": (
        ["stage=continual", "continual.strategy=ewc"],
        None,
        ["continual.strategy", "Invalid value 'ewc'", "merge, replay, isolation, retention"],
    ),
    "retention without candidates": (
        ["stage=continual", "continual.strategy=retention", "continual.candidates=1"],
        continual_strategy,
        ["continual.candidates=1 must be >= 2"],
    ),
    "negative SFT processes": (
        ["sft.num_processes=-1"],
        check_devices,
        ["sft.num_processes=-1 must be >= 0"],
    ),
    "an SFT step two processes cannot share": (
        ["sft.num_processes=2", "sft.batch_size=5", "sft.grad_accum=1"],
        check_devices,
        ["sft.batch_size=5 x sft.grad_accum=1 cannot be shared by 2 processes"],
    ),
    "a LoRA on lm_head in the policy SFT": (
        ["sft.target_modules=[q_proj,lm_head]"],
        check_devices,
        ["sft.target_modules includes lm_head", "sft.modules_to_save=[lm_head]"],
    ),
    "unknown reward baseline": (
        ["restem.reward_baseline=average"],
        None,
        ["restem.reward_baseline", "Invalid value 'average'", "no_update, passage"],
    ),
    "unknown learner": (
        ["restem.learner=teacher"],
        None,
        ["restem.learner", "Invalid value 'teacher'", "policy, base"],
    ),
    "unknown inner mode": (
        ["stage=evaluate", "lora.mode=turbo", "conditions=[passage]"],
        None,
        ["lora.mode", "Invalid value 'turbo', expected one of [fast, reference]"],
    ),
    "unknown condition": (
        ["stage=evaluate", "conditions=[base,nosuch]"],
        check_conditions,
        ["conditions: ['nosuch'] unknown", "base, passage", "selfedit"],
    ),
    "comparison of a row not in the table": (
        ["stage=evaluate", "conditions=[base,passage]", "evaluate.compare=[[passage,selfedit]]"],
        check_conditions,
        ["evaluate.compare: ['passage', 'selfedit'] is not a pair of rows in conditions"],
    ),
    "no self-edit per article": (
        ["stage=evaluate", "evaluate.samples=0"],
        check_conditions,
        ["evaluate.samples=0: at least one self-edit per article"],
    ),
    "a knowledge row on ARC's table": (
        ["experiment=demo/arc_cpu", "conditions=[base,passage,selfedit]"],
        check_conditions,
        ["conditions: ['base', 'passage', 'selfedit'] are not ARC conditions", "icl, ttt_base, seal, oracle"],
    ),
    "a domain without an evaluation table": (
        ["stage=evaluate", "domain._target_=seal_runner.errors.InputError"],
        check_conditions,
        ["domain._target_=seal_runner.errors.InputError has no evaluation table", "stage=restem"],
    ),
    "likelihood from an engine that only generates": (
        ["experiment=paper/knowledge_single_passage", "engine@qa_engine=vllm", "evaluate.likelihood=true"],
        check_conditions,
        ["evaluate.likelihood", "add engine@qa_engine=hf"],
    ),
}
if not torch.cuda.is_available():
    CHOICES["GPU workers on a CPU machine"] = (
        ["inner.devices=[cuda:*]"],
        check_devices,
        ["inner.devices=['cuda:*'] names no device"],
    )


@pytest.mark.parametrize(("args", "check", "fragments"), CHOICES.values(), ids=CHOICES.keys())
def test_impossible_choice_stops_before_any_work(compose_cfg, args, check, fragments) -> None:
    """Composition rejects a closed choice; the rest fail in checks a run makes before any work:
    `check_devices` first in `setup_run`, `check_conditions` before it (tests/test_choices.py),
    the continual strategy before the first sequence. Each is an InputError, so `seal-run` prints
    it as one line (test_bad_data_file_on_the_command_line_is_one_line_without_a_traceback)."""
    with pytest.raises((HydraException, InputError)) as info:
        cfg = compose_cfg("engine=hf", "engine@qa_engine=hf", *args)
        if check is not None:
            check(cfg)
    text = error_text(info.value)
    for fragment in fragments:
        assert fragment in text, text
