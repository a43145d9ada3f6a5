"""Real SmolLM2 through real vLLM and HF: an adapter trained to state a fact changes the answer."""

from __future__ import annotations

import pytest

from seal_runner.config import LoraConfig
from seal_runner.engines.base import LoraAdapter, Sampling
from seal_runner.lora.trainer import InnerJob
from seal_runner.lora.updater import InnerUpdater
from seal_runner.models import load_tokenizer
from seal_runner.prompts import PromptFormatter, qa_prompt

# One vLLM engine at a time: make test's workers run every test of the `vllm` group in one process.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("vllm")]

FACT = "Quellin Textile Guild\nThe first warden of the Quellin Textile Guild was Marit Oskellan."
QUESTION = ("Who was the first warden of the guild?", "Quellin Textile Guild")


@pytest.fixture(scope="module")
def fact_adapter(smollm2_path, tmp_path_factory) -> LoraAdapter:
    cfg = LoraConfig(
        rank=16,
        alpha=32.0,
        lr=3e-3,
        epochs=15,
        batch_size=1,
        max_length=128,
        adapters_per_batch=1,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    updater = InnerUpdater(cfg, str(smollm2_path), load_tokenizer(str(smollm2_path)))
    root = tmp_path_factory.mktemp("adapters")
    ((_, result, path),) = list(updater.run([InnerJob("fact", [FACT] * 2, seed=0)], root))
    assert result.failed is None and result.final_loss < 0.5, result.losses
    return LoraAdapter("fact", str(path))


@pytest.fixture(scope="module")
def prompt(smollm2_path) -> str:
    return PromptFormatter(load_tokenizer(str(smollm2_path)), chat=True)(qa_prompt(*QUESTION))


def _check_engine(engine, prompt: str, adapter: LoraAdapter) -> None:
    base, adapted = engine.generate([prompt, prompt], Sampling(max_tokens=32), [None, adapter])
    assert "oskellan" not in base.text.lower()
    assert "oskellan" in adapted.text.lower(), adapted.text
    assert adapted.text != base.text


def test_hf_engine_adapter_changes_answer(smollm2_path, fact_adapter, prompt):
    from seal_runner.engines.hf_engine import HFEngine

    _check_engine(HFEngine(str(smollm2_path), max_loras=2, max_lora_rank=16), prompt, fact_adapter)


def test_vllm_engine_adapter_changes_answer(vllm_engine, fact_adapter, prompt):
    _check_engine(vllm_engine, prompt, fact_adapter)


def test_vllm_sampling_is_seeded(vllm_engine, prompt):
    sampling = Sampling(temperature=1.0, top_p=0.95, max_tokens=24)
    first = vllm_engine.generate([prompt] * 3, sampling, seeds=[1, 2, 3])
    again = vllm_engine.generate([prompt] * 3, sampling, seeds=[1, 2, 3])
    assert [c.text for c in first] == [c.text for c in again]
    assert len({c.text for c in first}) > 1


def test_in_process_engine_let_go_between_calls_samples_as_vllms_own_layout(
    smollm2_path, vllm_engine, fact_adapter, prompt
):
    """`engine.in_process=true keep_alive=false`, the CPU demo's sampler: no engine is alive between
    calls (none to slow the inner loop), and each restart samples the seeded texts that vLLM's own
    process layout samples and serves adapters."""
    import psutil

    from seal_runner.engines.vllm_engine import VLLMEngine

    children = psutil.Process().children(recursive=True)
    engine = VLLMEngine(
        str(smollm2_path),
        max_model_len=1024,
        max_loras=4,
        max_lora_rank=16,
        in_process=True,
        keep_alive=False,
    )
    assert psutil.Process().children(recursive=True) == children, "an in-process engine starts no process"
    sampling = Sampling(temperature=1.0, top_p=0.95, max_tokens=24)
    first = engine.generate([prompt] * 3, sampling, seeds=[1, 2, 3])
    assert engine.llm is None
    again = engine.generate([prompt] * 3, sampling, seeds=[1, 2, 3])
    own_layout = vllm_engine.generate([prompt] * 3, sampling, seeds=[1, 2, 3])
    assert [c.text for c in first] == [c.text for c in again] == [c.text for c in own_layout]
    _check_engine(engine, prompt, fact_adapter)
    assert engine.llm is None
    engine.close()


def test_vllm_many_long_seeded_prompts_do_not_crash_the_cpu_engine(vllm_engine):
    """More prompt tokens than vLLM-CPU's default step budget (4096): with chunked prefill on, the
    partly prefilled seeded requests crashed the engine ('CPU Generator does not use offset'). Every
    prompt is distinct and seeded, as the self-edit prompts of a ReSTEM round are."""
    words = [
        "amber",
        "basalt",
        "cobalt",
        "dune",
        "ember",
        "fjord",
        "garnet",
        "heath",
        "indigo",
        "jasper",
        "kelp",
        "loam",
    ]
    prompts = [
        f"Passage {i}: " + " ".join(words[(i * 7 + j) % len(words)] for j in range(280)) for i in range(24)
    ]
    sampling = Sampling(temperature=1.0, top_p=0.95, max_tokens=4)
    completions = vllm_engine.generate(prompts, sampling, seeds=list(range(24)))
    assert len(completions) == 24 and all(c.num_tokens >= 1 for c in completions)
    again = vllm_engine.generate(prompts[:3], sampling, seeds=[0, 1, 2])
    assert [c.text for c in again] == [c.text for c in completions[:3]]
