"""Config composition: every shipped option composes, overrides apply, mistakes fail naming the key.

Options are discovered from the installed `seal_runner.conf` package, so a new YAML file (an
experiment preset, a model) is covered without touching this file.
"""

from __future__ import annotations

import ast
import importlib.util
import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import REPO, SEAL_RUN, error_text, seal_run
from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from seal_runner.config import (
    ARCDomainConfig,
    ARCSelfEditPromptConfig,
    HFEngineConfig,
    KnowledgeDomainConfig,
    LexicalGraderConfig,
    LLMJudgeGraderConfig,
    LoggerConfig,
    LoraConfig,
    ModelConfig,
    OpenAIEngineConfig,
    RestemConfig,
    SelfEditPromptConfig,
    SFTConfig,
    VLLMEngineConfig,
    register_configs,
)

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

CONF_MODULE = "seal_runner.conf"

# The schema each group's options must be typed with: typos and wrong types only fail on typed nodes.
GROUP_SCHEMAS: dict[str, tuple[type, ...]] = {
    "model": (ModelConfig,),
    "domain": (KnowledgeDomainConfig, ARCDomainConfig),
    "selfedit_prompt": (SelfEditPromptConfig, ARCSelfEditPromptConfig),
    "restem": (RestemConfig,),
    "lora": (LoraConfig,),
    "sft": (SFTConfig,),
    "engine": (VLLMEngineConfig, HFEngineConfig, OpenAIEngineConfig),
    "grader": (LexicalGraderConfig, LLMJudgeGraderConfig),
    "logger": (LoggerConfig,),
}


def _yaml_files(node: Traversable, prefix: str = "") -> Iterator[str]:
    """Relative paths of every YAML file under a package resource, depth first."""
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            yield from _yaml_files(child, f"{prefix}{child.name}/")
        elif child.name.endswith(".yaml"):
            yield f"{prefix}{child.name}"


def discover_options() -> list[tuple[str, str]]:
    """(group, option) for every YAML in a group folder; nested folders give options like demo/x."""
    options = []
    for rel in _yaml_files(files(CONF_MODULE)):
        if "/" not in rel or rel.startswith("hydra/"):
            continue  # the root config.yaml; Hydra's own groups (launchers: tests/test_scaleout.py)
        group, option = rel.split("/", 1)
        options.append((group, option.removesuffix(".yaml")))
    return options


OPTIONS = discover_options()


@pytest.fixture(scope="module")
def hydra_ctx() -> Iterator[None]:
    """One Hydra initialisation for the module: each compose is then ~10 ms."""
    register_configs()
    with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):
        yield


def _compose(overrides: list[str], hydra_cfg: bool = False) -> DictConfig:
    return compose(config_name="config", overrides=overrides, return_hydra_config=hydra_cfg)


def _resolved(cfg: DictConfig) -> dict:
    """Resolve every interpolation and fail on any ??? left; run_dir needs a live Hydra run, so pin it.

    Table 2 sources that read a user's file or checkpoint keep `path: ???` until a run selects them."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    job.run_dir = "/tmp/seal-runner-test-run"
    for source in job.selfedit_sources.values():
        if OmegaConf.is_missing(source, "path"):
            source.path = "/user/supplied"
    return OmegaConf.to_container(job, resolve=True, throw_on_missing=True)


def test_discovery_finds_every_group() -> None:
    """Guards the discovery itself: an empty or partial list would make the parametrised test vacuous."""
    groups = {g for g, _ in OPTIONS}
    assert set(GROUP_SCHEMAS) | {"experiment"} <= groups, groups
    assert ("experiment", "demo/knowledge_cpu") in OPTIONS
    assert ("lora", "reference") in OPTIONS


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes(hydra_ctx: None, group: str, option: str) -> None:
    """Each shipped option must compose, be selected, be schema-typed and leave no value missing.

    Group options compose without the default preset (`~experiment`) so that the YAML's own values
    can be checked to be what the group holds; one compose per option keeps this file fast.
    """
    preset = [] if group == "experiment" else ["~experiment"]
    cfg = _compose([*preset, f"{group}={option}"], hydra_cfg=True)
    assert cfg.hydra.runtime.choices[group] == option
    resolved = _resolved(cfg)
    if group == "experiment":
        # Presets are `# @package _global_` deltas; without it their keys would nest under `experiment`.
        assert "experiment" not in cfg
        assert resolved["experiment_name"] != "default", "a preset should name its runs"
        return
    assert isinstance(OmegaConf.to_object(cfg[group]), GROUP_SCHEMAS[group])
    raw = OmegaConf.create((files(CONF_MODULE) / group / f"{option}.yaml").read_text())
    unresolved = OmegaConf.to_container(cfg[group])
    for key, value in OmegaConf.to_container(raw).items():
        if key == "defaults":
            continue
        if isinstance(value, str) and value.startswith("${"):  # interpolations hold as written
            assert unresolved[key] == value, f"{group}={option}: {key}"
        elif isinstance(value, dict):  # nested nodes (a judge's client): the YAML sets a subset
            assert value.items() <= resolved[group][key].items(), f"{group}={option}: {key}"
        else:
            assert resolved[group][key] == value, f"{group}={option}: {key}"


def _leaves(node: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(dotted key, value) for every leaf of a plain nested dict."""
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


GROUP_OPTIONS = [(g, o) for g, o in OPTIONS if g != "experiment"]


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_group_files_hold_only_deltas(hydra_ctx: None, group: str, option: str) -> None:
    """The schema dataclass holds every default; a YAML key that repeats one is a second copy that
    can drift from it (ARC's generator families once differed: 5 in one, 10 in the other)."""
    schema = OmegaConf.get_type(_compose(["~experiment", f"{group}={option}"])[group])
    default = dict(_leaves(OmegaConf.to_container(OmegaConf.structured(schema), enum_to_str=True)))
    raw = OmegaConf.to_container(
        OmegaConf.create((files(CONF_MODULE) / group / f"{option}.yaml").read_text())
    )
    repeated = [k for k, v in _leaves(raw) if k != "defaults" and k in default and default[k] == v]
    assert not repeated, f"{group}/{option}.yaml repeats its schema's defaults: {repeated}"


@pytest.mark.parametrize("override", ["sampling.n=2", "cpt.num_processes=2"])
def test_removed_keys_fail_at_compose_naming_them(hydra_ctx: None, override: str) -> None:
    """Keys nothing read are gone from the schema, so setting one fails instead of doing nothing:
    `sampling.n` (the stages' own counts say how many self-edits) and `cpt.num_processes` (CPT trains
    in the run's process; only the policy SFT runs under accelerate launch)."""
    key = override.split("=")[0]
    with pytest.raises(HydraException) as info:
        _compose([override])
    text = error_text(info.value)
    assert key in text or key.split(".")[-1] in text, text
    assert _compose(["sft.num_processes=2"]).sft.num_processes == 2  # the policy SFT keeps its key


def test_targets_point_at_existing_classes(hydra_ctx: None) -> None:
    """`_target_` strings are only imported at run time; check them now without importing vLLM."""
    targets = [
        _compose([f"{group}={option}"])[group]._target_
        for group, option in OPTIONS
        if group in ("engine", "grader")
    ]
    sources = _compose([]).selfedit_sources.values()
    targets += [s._target_ for s in sources] + [s.engine._target_ for s in sources if "engine" in s]
    for target in targets:
        module, _, cls = target.rpartition(".")
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, target
        tree = ast.parse(Path(spec.origin).read_text())
        classes = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        assert cls in classes, f"{target}: no class {cls} in {spec.origin}"


def test_default_config(hydra_ctx: None) -> None:
    """The no-argument run is the one-round ReSTEM CPU demo on the built-in passages."""
    cfg = _compose([], hydra_cfg=True)
    assert cfg.hydra.runtime.choices["experiment"] == "demo/knowledge_cpu"
    assert cfg.hydra.runtime.choices["lora"] == "cpu_demo"
    assert cfg.stage == "restem" and cfg.restem.rounds == 1
    assert cfg.domain.data_path == "builtin:demo"
    # run_dir only resolves inside a live Hydra run, which compose() does not start.
    assert OmegaConf.to_container(cfg)["run_dir"] == "${hydra:runtime.output_dir}"


def test_value_override(hydra_ctx: None) -> None:
    cfg = _compose(["lora.lr=1e-4"])
    assert cfg.lora.lr == pytest.approx(1e-4)
    assert isinstance(cfg.lora.lr, float)


def test_typed_overrides_are_converted(hydra_ctx: None) -> None:
    """Command-line strings become the schema's types; null clears an optional field."""
    cfg = _compose(["lora.rank=8", "lora.alpha=16", "domain.shuffle_seed=42", "lora.target_modules=[q_proj]"])
    assert cfg.lora.rank == 8 and isinstance(cfg.lora.rank, int)
    assert cfg.lora.alpha == 16.0 and isinstance(cfg.lora.alpha, float)
    assert cfg.domain.shuffle_seed == 42
    assert list(cfg.lora.target_modules) == ["q_proj"]
    assert _compose(["domain.shuffle_seed=null"]).domain.shuffle_seed is None


def test_group_overrides_beat_the_preset(hydra_ctx: None) -> None:
    """The default preset overrides /lora; a group chosen on the command line must still win."""
    cfg = _compose(["lora=reference", "model=qwen2_5_7b", "engine=hf", "lora.lr=2e-4"])
    assert cfg.lora.mode == "reference" and cfg.lora.loss_normalization == "reference"
    assert cfg.lora.lr == pytest.approx(2e-4)
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-7B" and cfg.model.chat is False
    assert isinstance(OmegaConf.to_object(cfg.engine), HFEngineConfig)


def test_paper_arc_preset_takes_the_reference_protocol(hydra_ctx: None) -> None:
    """The ARC paper preset selects the reference's behaviour where ours differs (README deviations)."""
    paper = _compose(["experiment=paper/arc_fewshot"])
    assert paper.selfedit_prompt.wording == "reference" and paper.domain.strict_json is True
    assert paper.domain.eval_queries == "reference" and paper.domain.eval_permutations == 3
    assert paper.domain.voting == "reference" and paper.domain.ttt_augmentation == "reference"
    assert paper.selfedit_prompt.header == "reference" and paper.domain.token_layout == "reference"
    assert paper.lora.init_seed == 0 and paper.sft.dtype == "float32"
    assert list(paper.domain.eval_task_ids) == [
        "358ba94e", "59341089", "66e6c45b", "68b67ca3", "903d1b4a",
        "af24b4cc", "b1fc8b8e", "bc4146bd", "c7d4e6ad", "ce8d95cc",
    ]  # fmt: skip
    assert paper.domain.eval_task_ids == paper.domain.paper_eval_task_ids
    scored = _compose(
        ["experiment=paper/arc_fewshot", "domain.eval_task_ids=${domain.reference_scored_eval_task_ids}"]
    )
    assert set(scored.domain.eval_task_ids) == set(paper.domain.eval_task_ids) - {"358ba94e", "af24b4cc"}
    ours = _compose(["experiment=demo/arc_cpu"])
    assert ours.selfedit_prompt.wording == "ours" and ours.domain.strict_json is False
    assert ours.domain.eval_queries == "ours" and ours.domain.voting == "ours"
    assert ours.domain.ttt_augmentation == "ours"
    assert ours.selfedit_prompt.header == "template" and ours.domain.token_layout == "ours"
    assert ours.lora.init_seed is None and ours.sft.dtype is None


KNOWLEDGE_PAPER_PRESETS = [
    f"paper/{name}"
    for name in (
        "knowledge_single_passage",
        "knowledge_prompts",
        "knowledge_cpt",
        "knowledge_continual",
        "knowledge_restem",
    )
]


@pytest.mark.parametrize("preset", KNOWLEDGE_PAPER_PRESETS)
def test_paper_knowledge_presets_take_the_reference_judge(hydra_ctx: None, preset: str) -> None:
    """The reference's GPT-4.1 call has no injection guard and sends no sampling parameters."""
    grader = _compose([f"experiment={preset}"]).grader
    assert grader._target_.endswith("LLMJudgeGrader")
    assert grader.injection_guard is False and grader.temperature is None and grader.max_tokens is None
    ours = _compose(["grader=llm_judge"]).grader
    assert ours.injection_guard is True and ours.temperature == 0.0 and ours.max_tokens == 16


@pytest.mark.parametrize("preset", KNOWLEDGE_PAPER_PRESETS)
def test_paper_presets_sample_self_edits_as_the_reference(hydra_ctx: None, preset: str) -> None:
    """The reference samples its model's self-edits at temperature 1, top_p 0.95, with 8192 new tokens
    after a prompt of up to 2048 (vLLM's --max-model-len MAX_TOKENS + 2048), and asks GPT-4.1 with no
    sampling parameter (the API's defaults)."""
    cfg = _compose([f"experiment={preset}"])
    assert OmegaConf.to_container(cfg.sampling) == {"temperature": 1.0, "top_p": 0.95, "max_tokens": 8192}
    assert cfg.model.max_model_len >= cfg.sampling.max_tokens + 2048
    unset = {"temperature": None, "top_p": None, "max_tokens": None}
    assert OmegaConf.to_container(cfg.selfedit_sources.openai.sampling) == unset
    assert "sampling" not in cfg.selfedit_sources.selfedit  # the run's own model samples with `sampling`


def test_a_source_takes_sampling_keys_from_the_command_line(hydra_ctx: None) -> None:
    cfg = _compose(
        ["selfedit_sources.openai.sampling.top_p=0.95", "+selfedit_sources.policy.sampling.max_tokens=512"]
    )
    assert cfg.selfedit_sources.openai.sampling.top_p == 0.95
    assert cfg.selfedit_sources.policy.sampling.max_tokens == 512


def test_paper_restem_preset_cuts_no_sft_example(hydra_ctx: None) -> None:
    """The reference's policy SFT sets max_length to its longest example; ours cuts at 2048."""
    assert _compose(["experiment=paper/knowledge_restem"]).sft.max_length is None
    assert SFTConfig().max_length == 2048


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("lora.rnak=3", "rnak"),
        ("domain.n_aricles=3", "n_aricles"),
        ("engine.max_lora=3", "max_lora"),  # engine is `Any` at the root: the option's schema must catch it
        ("sed=1", "sed"),
    ],
)
def test_typo_key_fails_naming_it(hydra_ctx: None, override: str, key: str) -> None:
    with pytest.raises(HydraException) as info:
        _compose([override])
    assert key in str(info.value), error_text(info.value)


def test_option_specific_key_rejected_on_other_option(hydra_ctx: None) -> None:
    """Each engine option has its own schema: a vLLM-only field is a typo for engine=hf."""
    with pytest.raises(HydraException) as info:
        _compose(["engine=hf", "engine.gpu_memory_utilization=0.3"])
    assert "gpu_memory_utilization" in str(info.value)


@pytest.mark.parametrize(
    ("override", "key"),
    [("lora.rank=big", "lora.rank"), ("domain.shuffle_seed=abc", "domain.shuffle_seed"), ("seed=x", "seed")],
)
def test_wrong_type_fails_naming_the_key(hydra_ctx: None, override: str, key: str) -> None:
    with pytest.raises(HydraException) as info:
        _compose([override])
    text = error_text(info.value)
    assert key in str(info.value), text
    assert "could not be converted" in text.lower() or "Integer" in text, text


@pytest.mark.parametrize(
    ("override", "group"), [("model=nope", "model"), ("experiment=demo/nope", "experiment")]
)
def test_unknown_option_fails_naming_the_group(hydra_ctx: None, override: str, group: str) -> None:
    with pytest.raises(HydraException) as info:
        _compose([override])
    text = str(info.value)
    assert f"{group}/" in text and "nope" in text, text


def test_unknown_option_lists_the_choices(hydra_ctx: None) -> None:
    """A wrong model name should show what exists, not just that it failed."""
    with pytest.raises(HydraException) as info:
        _compose(["model=nope"])
    for group, option in OPTIONS:
        if group == "model":
            assert option in str(info.value)


@pytest.mark.integration
def test_cli_help_from_outside_repo(tmp_path: Path) -> None:
    """--help composes the packaged configs, so it proves they ship with the package: the installed
    entry point, from a directory outside the repo, without PYTHONPATH help. (A typo on the command
    line, run the same way: tests/test_choices.py.)"""
    if not Path(SEAL_RUN).exists():
        pytest.skip(f"{SEAL_RUN} not installed")
    assert not tmp_path.resolve().is_relative_to(REPO)
    start = time.perf_counter()
    proc = seal_run("--help", cwd=tmp_path, env={}, unset=("PYTHONPATH", "HYDRA_FULL_ERROR"), timeout=60)
    print(f"seal-run --help took {time.perf_counter() - start:.2f} s")
    for group in {g for g, _ in OPTIONS}:
        assert group in proc.stdout
    assert not any(tmp_path.iterdir()), "--help must not create run directories"
