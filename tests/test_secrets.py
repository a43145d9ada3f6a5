"""A planted API key reaches the judge's server and nothing else: no run file, config dump, log or W&B file.

`seal-run` runs as a user runs it (a subprocess, offline W&B) with the tiny model, the LLM judge and
the `openai` QA engine (with runtime LoRA adapters) all pointed at the local fake server; the key
lives in the variable both are told to read and, as a decoy, in OPENAI_API_KEY too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import RUN_ENV, seal_run
from fake_openai_server import FakeOpenAIServer, gullible_judge

KEY_ENV, PLANTED_KEY = "SEAL_TEST_SECRET_KEY", "sk-PLANTED-0123456789abcdef"


def judge_or_answer(body: dict) -> str:
    """Chat requests are the judge's; raw completions are the QA engine's answers."""
    return gullible_judge(body) if "messages" in body else " Orsolya Kettridge lit it in 1847."


def files_containing(root: Path, secret: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and secret in path.read_bytes()]


@pytest.mark.integration
def test_planted_key_is_used_but_never_written(tiny_model_dir, tmp_path) -> None:
    run_dir, cache_dir = tmp_path / "run", tmp_path / "judge-cache"
    env = RUN_ENV | {KEY_ENV: PLANTED_KEY, "OPENAI_API_KEY": PLANTED_KEY}
    with FakeOpenAIServer(reply=judge_or_answer, runtime_lora=True) as server:
        proc = seal_run(
            "~experiment",  # the default preset tunes the HF QA engine; this run uses another
            "stage=evaluate",
            "sampling.max_tokens=12",
            f"model.name_or_path={tiny_model_dir}",
            "engine=hf",
            "engine@qa_engine=openai",
            f"qa_engine.base_url={server.base_url}",
            f"qa_engine.api_key_env={KEY_ENV}",
            "conditions=[base,passage]",
            "domain.n_articles=1",
            "lora.epochs=1",
            "lora.rank=4",
            "lora.alpha=8",
            "grader=llm_judge",
            f"grader.client.base_url={server.base_url}",
            f"grader.client.api_key_env={KEY_ENV}",
            f"grader.client.cache_dir={cache_dir}",
            "grader.on_failure=skip",
            "logger=wandb",
            "logger.mode=offline",
            f"hydra.run.dir={run_dir}",
            cwd=tmp_path,
            env=env,
        )

    # The scan must not be vacuous: the key was really used, and the run wrote what it writes.
    assert set(server.paths) == {"/v1/completions", "/v1/chat/completions"}, "engine and judge both ran"
    assert set(server.auth_headers) == {f"Bearer {PLANTED_KEY}"}
    assert server.lora_calls and server.loaded_adapters == {}
    assert (run_dir / "results.jsonl").exists() and (run_dir / ".hydra" / "config.yaml").exists()
    assert list((run_dir / "wandb").glob("offline-run-*/*.wandb")), "W&B offline files are scanned too"
    assert list(cache_dir.rglob("*.json")), "the verdict cache is scanned too"
    assert KEY_ENV in (run_dir / ".hydra" / "config.yaml").read_text(), "the variable's name is recorded"

    leaks = files_containing(tmp_path, PLANTED_KEY.encode())
    assert leaks == [], f"planted key written to {leaks}"
    assert PLANTED_KEY not in proc.stdout + proc.stderr
