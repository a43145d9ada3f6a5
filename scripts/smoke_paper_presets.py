"""Every `experiment=paper/*` preset run end to end by `seal-run`, on tiny random models of its real
architecture, before anyone spends GPU hours on it.

Each preset runs as written: its stage, conditions, engines (vLLM where it says vllm, HF where it says
hf), LoRA mode, grader and every protocol switch. Only three kinds of override are added, each printed:
  sizes   fewer passages / tasks / self-edits / rounds / epochs / tokens (`SIZES`; nothing else);
  model   a 2-layer random model of the preset's architecture, saved under <out>/models/: a Qwen2
          (`Qwen2ForCausalLM`, q/k/v bias, untied embeddings, rope theta 1e6: Qwen2.5-7B's keys from
          scripts/gpu_check.py) for the knowledge presets, a Llama (`LlamaForCausalLM`, tied
          embeddings, llama3 rope scaling: Llama-3.2-1B's) for ARC, whose tokenizer is SmolLM2's plus
          Llama 3's header tokens, BOS and a Llama-3.2-style chat template (selfedit_prompt.header=
          reference writes that header by hand). Hidden 128 over 4 heads: vLLM-CPU's attention needs a
          head size of at least 32. Their output head favours newline and EOS (`favour_lines`), so
          sampled self-edits have lines and end instead of one line cut at max_tokens;
  wiring  data, endpoints and outputs: SQuAD files made by scripts/prepare_squad.py from the shared
          50-passage sample (first 25 passages -> squad_dev.json, the rest -> squad_train.json); ARC
          files copied by scripts/download_arc.py from the shared training set, whose tasks also stand
          in for the paper's evaluation tasks (no evaluation file is on this machine); GPT-4.1, as judge
          and as the `openai` self-edit source, is tests/fake_openai_server.py on 127.0.0.1 behind the
          same OpenAI client (base_url and key variable from the config); logger=none.

Per preset: its command, exit code, wall seconds, and its summary.json's top-level keys and headline
numbers, in <out>/smoke.json and <out>/smoke.md; logs in <out>/<preset>.log. Exits 1 if any fails.
`--dry-run` prints the commands and composes each job with `seal-run --cfg job` (no model, no run),
listing every config value that differs from the preset's own.

    python scripts/smoke_paper_presets.py [--out outputs/smoke_presets] [--only arc_fewshot] [--dry-run]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
import types
import zlib
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
SEAL_RUN = str(Path(sys.executable).with_name("seal-run"))  # the installed entry point, as a user runs it
FAKE_KEY_ENV = "SEAL_SMOKE_FAKE_KEY"  # the fake server's key: a real OpenAI key is never sent to it
RUN_ENV = {
    "HYDRA_FULL_ERROR": "1",
    "WANDB_SILENT": "true",
    "HF_HUB_OFFLINE": "1",  # every model is local: a hub lookup would be a bug
    FAKE_KEY_ENV: "sk-smoke-fake",
}
TINY_SHAPE = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 16384,  # above Llama 3.2's original 8192 (its llama3 rope scaling)
}
LLAMA3_MARKUP = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
# Llama 3.2's chat template without its tool branches: date lines in the system turn, turns trimmed.
LLAMA32_CHAT_TEMPLATE = (
    r"{{- bos_token }}"
    r'{%- if not date_string is defined %}{%- set date_string = "26 Jul 2024" %}{%- endif %}'
    r"{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] | trim %}"
    r"{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
    r'{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}'
    r'{{- "Cutting Knowledge Date: December 2023\n" }}'
    r'{{- "Today Date: " + date_string + "\n\n" }}'
    r'{{- system_message }}{{- "<|eot_id|>" }}'
    r"{%- for message in messages %}"
    r"{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    r" + '<|eot_id|>' }}"
    r"{%- endfor %}"
    r"{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
)
# Two of the paper's 12 training tasks (44f52bb0 has two test inputs); evaluation stand-ins: two other
# small training tasks (25ff71a9 has two test inputs), since the paper's 10 are in the evaluation set.
ARC_TRAIN_IDS = ("44f52bb0", "5582e5ca")
ARC_EVAL_STANDINS = ("d631b094", "25ff71a9")
KNOWLEDGE_SIZES = ("domain.n_articles=2", "sampling.max_tokens=64", "model.max_model_len=2048")
SIZES = {
    "knowledge_single_passage": (*KNOWLEDGE_SIZES, "lora.epochs=1"),
    "knowledge_prompts": (*KNOWLEDGE_SIZES, "lora.epochs=1"),
    "knowledge_restem": (
        *KNOWLEDGE_SIZES,
        "restem.rounds=1",
        "restem.contexts_per_round=2",
        "restem.samples_per_context=2",
        "lora.epochs=1",
        "sft.epochs=1",
    ),
    "knowledge_cpt": (*KNOWLEDGE_SIZES, "cpt.samples_per_article=2", "cpt.epochs=1"),
    "knowledge_continual": (
        "continual.runs=2",
        "continual.sequences=1",
        "continual.length=2",
        "sampling.max_tokens=64",
        "model.max_model_len=2048",
        "lora.epochs=1",
    ),
    "arc_fewshot": (
        f"domain.train_task_ids=[{','.join(ARC_TRAIN_IDS)}]",
        "domain.train_samples_per_task=2",
        "domain.eval_samples_per_task=2",
        "domain.max_sample_attempts=4",
        "domain.max_ttt_examples=8",
        "domain.answer_max_tokens=64",
        "domain.oracle.num_train_epochs=1",
        "lora.max_tokens_per_forward=4096",  # activation memory per forward (49k-token logits)
        "model.max_model_len=2048",
    ),
}
PRESETS = tuple(SIZES)
# What the overrides must never touch: the protocol choices the presets exist to pin (checked by --dry-run).
PROTOCOL_KEYS = (
    "stage", "conditions", "engine._target_", "qa_engine._target_", "grader._target_",
    "grader.injection_guard", "grader.temperature", "grader.max_tokens", "lora.mode",
    "lora.loss_normalization", "lora.rank", "lora.target_modules", "lora.init_seed", "sampling.temperature",
    "sampling.top_p", "selfedit_prompt.wording", "selfedit_prompt.header", "domain.shuffle_seed",
    "domain.split_newlines", "domain.strict_json", "domain.token_layout", "domain.voting",
    "domain.eval_queries", "domain.eval_permutations", "domain.ttt_augmentation", "domain.leave_n",
    "restem.selection", "restem.reward", "restem.inner_seeds", "restem.split_newlines_per_round",
    "sft.max_length", "sft.dtype", "cpt.mode", "cpt.full_finetune", "continual.strategy",
)  # fmt: skip
HEADLINE_KEYS = ("macro_accuracy", "micro_accuracy", "success_rate", "gain", "invalid_attempts", "scored")


@dataclass(frozen=True)
class Job:
    """One preset's `seal-run` invocation (a multirun preset: one invocation, several jobs)."""

    preset: str
    sizes: tuple[str, ...]
    wiring: tuple[str, ...]
    run_dir: Path
    multirun: bool

    @property
    def argv(self) -> list[str]:
        return [
            SEAL_RUN,
            *(["-m"] if self.multirun else []),
            f"experiment=paper/{self.preset}",
            *self.overrides,
        ]

    @property
    def overrides(self) -> list[str]:
        return [*self.sizes, *self.wiring]


def load_script(name: str) -> types.ModuleType:
    """A sibling script as a module (scripts/ is not a package; its own sibling imports resolve too)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module(name)


def build_job(preset: str, out: Path, base_url: str) -> Job:
    data, models = out / "data", out / "models"
    arc = preset == "arc_fewshot"
    wiring = [f"model.name_or_path={models / ('tiny-llama3' if arc else 'tiny-qwen2')}", "logger=none"]
    if arc:
        files = {
            f"{split}_{kind}": data / "arc" / f"arc-agi_training_{kind}.json"
            for split in ("train", "eval")
            for kind in ("challenges", "solutions")
        }
        wiring += [f"domain.{key}={path}" for key, path in files.items()]
        wiring.append(f"domain.eval_task_ids=[{','.join(ARC_EVAL_STANDINS)}]")
    else:
        wiring += [
            f"domain.data_path={data / 'squad_dev.json'}",
            f"grader.client.base_url={base_url}",
            f"grader.client.api_key_env={FAKE_KEY_ENV}",
            f"grader.client.cache_dir={out / 'judge_cache'}",  # fake verdicts never reach the real cache
            f"selfedit_sources.openai.engine.base_url={base_url}",
            f"selfedit_sources.openai.engine.api_key_env={FAKE_KEY_ENV}",
        ]
    if preset == "knowledge_restem":
        wiring.append(f"restem.train_data_path={data / 'squad_train.json'}")
    multirun = preset == "knowledge_prompts"
    run_dir = out / preset
    wiring.append(f"hydra.{'sweep' if multirun else 'run'}.dir={run_dir}")
    return Job(preset, SIZES[preset], tuple(wiring), run_dir, multirun)


# ------------------------------------------------------------------------------------------ inputs


def make_models(models: Path) -> None:
    """The two tiny checkpoints (seed 0), once: their shapes are TINY_SHAPE over the real configs."""
    if all((models / name / "config.json").is_file() for name in ("tiny-qwen2", "tiny-llama3")):
        return
    import torch
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoModelForCausalLM

    from seal_runner.domains.arc.ttt_format import ChatRenderer
    from seal_runner.models import cache_root, ensure_smollm2_checkpoint, load_tokenizer

    gpu_check = load_script("gpu_check")
    smollm2 = str(ensure_smollm2_checkpoint(cache_root()))

    qwen_tok = load_tokenizer(smollm2)
    llama_tok = load_tokenizer(smollm2)
    llama_tok.add_special_tokens({"additional_special_tokens": list(LLAMA3_MARKUP)})
    llama_tok.bos_token, llama_tok.eos_token = "<|begin_of_text|>", "<|eot_id|>"
    llama_tok.pad_token = None  # as Llama 3's: load_tokenizer pads with the EOS
    bos = llama_tok.bos_token
    llama_tok._tokenizer.post_processor = TemplateProcessing(  # Llama 3 puts its BOS before every text
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 $B:1", special_tokens=[(bos, llama_tok.bos_token_id)]
    )
    llama_tok.chat_template = LLAMA32_CHAT_TEMPLATE
    ChatRenderer(llama_tok).check_llama3_markup()  # what selfedit_prompt.header=reference requires
    for name, arch, tokenizer in (
        ("tiny-qwen2", gpu_check.QWEN2_5_7B, qwen_tok),
        ("tiny-llama3", gpu_check.LLAMA3_2_1B, llama_tok),
    ):
        shape = {**TINY_SHAPE, "vocab_size": len(tokenizer)}
        ids = {f"{k}_token_id": getattr(tokenizer, f"{k}_token_id") for k in ("bos", "eos", "pad")}
        config = gpu_check.CONFIG_CLASSES[arch["model_type"]].from_dict(
            {k: v for k, v in arch.items() if k != "model_type"} | shape | ids
        )
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        favour_lines(model, tokenizer)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(models / name)
        tokenizer.save_pretrained(models / name)
        print(f"{name}: {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters")


def favour_lines(model, tokenizer) -> None:
    """A random model's next token is near-uniform over 49k, so it never ends a line or its text: every
    self-edit would be one line cut at max_tokens, which domain.drop_cut_line empties. One constant
    residual dimension (10.0 in every embedding) lets the output head raise newline to ~14% a step and
    EOS to ~1% (measured on random tokens), a shift shared by every other token."""
    import torch

    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        model.get_input_embeddings().weight[:, 0] = 10.0
        head = model.get_output_embeddings().weight  # the same tensor when the embeddings are tied
        base = head[:, 0].median()
        head[newline, 0] = base + 0.8
        head[tokenizer.eos_token_id, 0] = base + 0.58


def make_data(data: Path, shared: Path) -> None:
    """SQuAD dev/train files through scripts/prepare_squad.py (the sample back in the official layout
    first) and ARC training files through scripts/download_arc.py, once."""
    sample = shared / "data" / "squad" / "squad_val_sample50.json"
    if not sample.is_file():
        raise SystemExit(f"{sample} not found: pass --shared <dir holding data/squad and data/arc>")
    articles = json.loads(sample.read_text())
    for name, part in (("squad_dev", articles[:25]), ("squad_train", articles[25:])):
        if (data / f"{name}.json").is_file():
            continue
        official = data / f"{name}-v1.1.json"
        official.parent.mkdir(parents=True, exist_ok=True)
        official.write_text(json.dumps({"data": [squad_article(a, name, i) for i, a in enumerate(part)]}))
        run_script("prepare_squad", "--squad", official, "--out", data / f"{name}.json")
    if not (data / "arc" / "arc-agi_training_solutions.json").is_file():
        ids = [*ARC_TRAIN_IDS, *ARC_EVAL_STANDINS]
        run_script(
            "download_arc",
            "--source",
            shared / "data" / "arc",
            "--split",
            "training",
            "--out",
            data / "arc",
            "--task-ids",
            *ids,
        )


def squad_article(article: dict, prefix: str, index: int) -> dict:
    """One list-format passage as an official SQuAD v1.1 article with one paragraph."""
    qas = [
        {
            "id": f"{prefix}-{index}-{j}",
            "question": q["question"],
            "answers": [{"text": q["answer"], "answer_start": 0}],
        }
        for j, q in enumerate(article["questions"])
    ]
    return {"title": article["title"], "paragraphs": [{"context": article["context"], "qas": qas}]}


def run_script(name: str, *args: object) -> None:
    subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py"), *map(str, args)], check=True)


def fake_reply(body: dict) -> str:
    """GPT-4.1's stand-in. As judge: yes when the gold is in the answer (tests' gullible judge) or on a
    coin fixed by the answer's text, so the tiny model's accuracies are not all zero. As the `openai`
    self-edit source: two implication lines."""
    from fake_openai_server import gullible_judge

    content = body["messages"][-1]["content"]
    if "Gold answer:" not in content:
        return "1. The passage states a fact.\n2. The fact is stated in the passage."
    verdict = gullible_judge(body)
    return "yes" if verdict == "yes" or zlib.crc32(content.encode()) % 2 == 0 else verdict


# ------------------------------------------------------------------------------------------ running


def run_job(job: Job, log_path: Path, timeout: float) -> dict:
    """Run one preset from a fresh run dir; its record for smoke.json."""
    shutil.rmtree(job.run_dir, ignore_errors=True)
    env = RUN_ENV | {k: v for k, v in os.environ.items() if k != FAKE_KEY_ENV}
    env.setdefault("OMP_NUM_THREADS", "1")  # as the tests' runs: workers must not oversubscribe the cores
    print(f"\n== {job.preset}\n{' '.join(job.argv)}", flush=True)
    started = time.perf_counter()
    with log_path.open("w") as log:
        try:
            code = subprocess.run(
                job.argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    seconds = round(time.perf_counter() - started, 1)
    summaries = sorted(job.run_dir.glob("*/summary.json" if job.multirun else "summary.json"))
    record = {
        "preset": job.preset,
        "command": job.argv,
        "sizes": list(job.sizes),
        "wiring": list(job.wiring),
        "exit_code": code,
        "seconds": seconds,
        "log": str(log_path),
        "summaries": {str(p.relative_to(job.run_dir)): digest(json.loads(p.read_text())) for p in summaries},
    }
    if job.multirun and code == 0:  # the preset's documented next step
        table = subprocess.run(
            [sys.executable, str(SCRIPTS / "make_table.py"), str(job.run_dir)],
            capture_output=True,
            text=True,
        )
        record["make_table_exit_code"] = table.returncode
    record["ok"] = code == 0 and bool(summaries) and record.get("make_table_exit_code", 0) == 0
    status = "ok" if record["ok"] else f"FAILED (exit {code}); log tail:\n" + tail(log_path)
    print(f"{job.preset}: {status} in {seconds} s", flush=True)
    return record


def digest(summary: dict) -> dict:
    """A summary.json's top-level keys and headline numbers: the objective, each condition's rates,
    each round's kept self-edits."""
    conditions = summary.get("conditions") or {}
    return {
        "keys": sorted(summary),
        "objective": summary.get("objective"),
        "total_s": summary.get("total_s"),
        "conditions": {
            name: {k: c[k] for k in HEADLINE_KEYS if k in c}
            for name, c in conditions.items()
            if isinstance(c, dict)
        },
        "rounds": [
            {k: r.get(k) for k in ("round", "chosen", "selfedits")} for r in summary.get("rounds", [])
        ],
    }


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def markdown(records: list[dict]) -> str:
    rows = [
        "| preset | ok | exit | seconds | objective | summary.json keys |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        for where, s in r["summaries"].items() or {"-": {"objective": None, "keys": []}}.items():
            objective = "-" if s["objective"] is None else f"{s['objective']:.3f}"
            name = r["preset"] if where in ("summary.json", "-") else f"{r['preset']} ({where})"
            rows.append(
                f"| {name} | {r['ok']} | {r['exit_code']} | {r['seconds']} | {objective} | "
                f"{', '.join(s['keys'])} |"
            )
    return "\n".join(rows) + "\n"


# ------------------------------------------------------------------------------------------ dry run


def compose(preset: str, overrides: list[str]) -> dict:
    """`seal-run --cfg job`: the job's config, composed as a run composes it, without running it."""
    argv = [SEAL_RUN, f"experiment=paper/{preset}", *overrides, "--cfg", "job"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{preset}: does not compose:\n{' '.join(argv)}\n{proc.stderr[-3000:]}")
    return yaml.safe_load(proc.stdout)


def sweep_points(preset: str) -> list[list[str]]:
    """A multirun preset's jobs as override lists, from its hydra.sweeper.params."""
    argv = [SEAL_RUN, f"experiment=paper/{preset}", "--cfg", "hydra", "--package", "hydra.sweeper.params"]
    params = yaml.safe_load(subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=True).stdout)
    points = [[]]
    for key, values in params.items():
        points = [[*p, f"{key}={v}"] for p in points for v in str(values).split(",")]
    return points


def flat(node: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(node, dict):
        return {prefix: node}
    return {k: v for key, child in node.items() for k, v in flat(child, f"{prefix}{key}.").items()} or {
        prefix: {}
    }


def dry_run(job: Job) -> dict:
    """Compose every job of `job` and list what differs from the preset's own config; fails when a
    protocol key (PROTOCOL_KEYS) differs."""
    points = sweep_points(job.preset) if job.multirun else [[]]
    changed: dict[str, list] = {}
    for i, point in enumerate(points):
        smoke = flat(compose(job.preset, [*point, *job.overrides]))
        if i == 0:  # the other points differ from it only in their sweep value
            paper = flat(compose(job.preset, point))
            keys = sorted(set(paper) | set(smoke))
            changed = {
                k.rstrip("."): [paper.get(k), smoke.get(k)] for k in keys if paper.get(k) != smoke.get(k)
            }
    touched = [
        k for k in changed if k in PROTOCOL_KEYS or k.startswith(tuple(f"{p}." for p in PROTOCOL_KEYS))
    ]
    if touched:
        raise SystemExit(f"{job.preset}: the smoke overrides change protocol keys {touched}")
    return {"preset": job.preset, "command": job.argv, "jobs": len(points), "changed": changed}


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "smoke_presets")
    parser.add_argument("--only", choices=PRESETS, action="append", help="repeatable; default: every preset")
    parser.add_argument("--dry-run", action="store_true", help="print and compose the commands; run nothing")
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path(os.environ.get("SEAL_SHARED_DIR", REPO.parent / "shared")),
        help="the shared dir with data/squad/squad_val_sample50.json and data/arc/ (default ../shared)",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per preset")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.resolve()
    presets = args.only or list(PRESETS)
    if args.dry_run:
        for preset in presets:
            job = build_job(preset, out, "http://127.0.0.1:PORT/v1")
            result = dry_run(job)
            print(f"\n== {preset}: {result['jobs']} job(s) compose\n{' '.join(job.argv)}")
            print(f"sizes:  {' '.join(job.sizes)}\nwiring: {' '.join(job.wiring)}")
            for key, (paper, smoke) in result["changed"].items():
                print(f"  {key}: {paper!r} -> {smoke!r}")
        return 0
    sys.path.insert(0, str(REPO / "tests"))
    from fake_openai_server import FakeOpenAIServer

    make_models(out / "models")
    make_data(out / "data", args.shared)
    records = []
    with FakeOpenAIServer(reply=fake_reply) as server:
        for preset in presets:
            job = build_job(preset, out, server.base_url)
            records.append(run_job(job, out / f"{preset}.log", args.timeout))
            (out / "smoke.json").write_text(json.dumps(records, indent=2) + "\n")
        requests = server.hits
    (out / "smoke.md").write_text(markdown(records))
    print(f"\n{markdown(records)}\nfake OpenAI server: {requests} requests; {out / 'smoke.json'}")
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
