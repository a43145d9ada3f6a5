"""scripts/judge_agreement.py on a hand-made run dir, graded by the fake server's judge over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fake_openai_server import FakeOpenAIServer

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "judge_agreement.py"


def record(prediction: str, gold: str = "Paris") -> dict:
    return {"question": "Topic: France\nCapital?", "gold": gold, "prediction": prediction, "correct": None}


def test_agreement_confusion_and_throughput(tmp_path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "eval" / "round_0").mkdir(parents=True)
    rows = [record("It is Paris."), record("Berlin."), record("yes indeed"), record("")]
    (run_dir / "eval" / "round_0" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "results.jsonl").write_text(json.dumps(record("Mars is red", gold="red")) + "\n")
    out = tmp_path / "report.json"
    with FakeOpenAIServer() as server:
        proc = subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                str(run_dir),
                "--base-url",
                server.base_url,
                "--model",
                "judge",
                "--api-key-env",
                "SEAL_TEST_UNSET",
                "--concurrency",
                "1",
                "4",
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "SEAL_TEST_UNSET": ""},
        )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["answers"] == 5 and server.hits == 2 * 4, (
        "one cold pass per concurrency, empty answers skipped"
    )
    agreement = report["agreement"]
    assert agreement["judged"] == 4 and agreement["agreement_rate"] == 0.75
    assert agreement["confusion"] == {
        "lexical_no/judge_no": 1,
        "lexical_no/judge_yes": 1,  # the gullible judge falls for "yes indeed"
        "lexical_yes/judge_yes": 2,
    }
    assert [p["concurrency"] for p in report["throughput"]] == [1, 4]
    assert all(p["judge_requests"] == 4 and p["questions_per_s"] > 0 for p in report["throughput"])
    assert report["disagreement_examples"] == [
        {"gold": "Paris", "prediction": "yes indeed", "lexical": False, "judge": "yes"}
    ]
    assert "agreement 0.750 over 4 judged answers" in proc.stdout


def test_run_dir_without_results_is_a_clear_error(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and f"no results.jsonl under {tmp_path}" in proc.stderr
