import textwrap

import pytest

from efficient_bert.pretrain.schema import load_config
from efficient_bert.errors import ConfigError

BASE = """
tokenizer: {path: tok}
train_loader:
  dataset: {local: mds}
max_duration: 10ba
optimizer: {name: decoupled_adamw, lr: 1.0e-3}
"""


def write(tmp_path, extra=""):
    path = tmp_path / "run.yaml"
    path.write_text(BASE + textwrap.dedent(extra))
    return path


def test_valid_config_with_overrides_and_interpolation(tmp_path):
    path = write(tmp_path, "variables: {root: /data}\neval_loader:\n  dataset: {local: '${variables.root}/mds', split: validation}\n")
    cfg = load_config(path, ["optimizer.lr=0.5", "train_loader.num_workers=0", "max_duration=20ba"])
    assert cfg.optimizer == {"name": "decoupled_adamw", "lr": 0.5}
    assert (cfg.train_loader.num_workers, cfg.max_duration) == (0, "20ba")
    assert cfg.eval_loader.dataset.local == "/data/mds" and cfg.train_loader.dataset.mlm_probability == 0.30


@pytest.mark.parametrize("extra, overrides, message", [
    ("max_duraton: 5ba\n", [], "unknown key 'max_duraton' (did you mean 'max_duration'?)"),
    ("", ["train_loader.dataset.shufle=false"], "unknown key 'train_loader.dataset.shufle' (did you mean 'shuffle'?)"),
    ("", ["global_train_batch_size=lots"], "invalid value for global_train_batch_size"),
    ("", ["max_duration"], "key=value"),
])
def test_bad_keys_and_values(tmp_path, extra, overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, extra), overrides)
    assert message in str(info.value)


def test_missing_required_key_and_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("tokenizer: {path: tok}\ntrain_loader: {dataset: {local: mds}}\n")
    with pytest.raises(ConfigError, match="required keys are not set: max_duration"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_component_names_and_options_are_checked(tmp_path):
    import torch

    from efficient_bert.pretrain.components import CALLBACKS, OPTIMIZERS
    from efficient_bert.optim import param_groups

    params = param_groups(torch.nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="unknown optimizer 'adamx' \\(did you mean 'adamw'\\?\\)"):
        OPTIMIZERS.build("adamx", {"lr": 1.0}, params=params)
    with pytest.raises(ConfigError, match="optimizer: optimizer 'decoupled_adamw' has no option 'lrr' \\(did you mean 'lr'\\?\\)"):
        OPTIMIZERS.build("decoupled_adamw", {"lrr": 1.0}, where="optimizer", params=params)
    with pytest.raises(ConfigError, match="has no option 'window'"):
        CALLBACKS.build("speed_monitor", {"window": 3})
    opt = OPTIMIZERS.build("decoupled_adamw", {"lr": 0.1, "weight_decay": 0.5}, params=params)
    # the matrix decays, the bias does not (torch's AdamW form of the decoupled decay: wd / lr)
    assert [g["weight_decay"] for g in opt.param_groups] == [pytest.approx(5.0), 0.0]


def test_a_component_error_names_its_key(tokenizer):
    from efficient_bert.pretrain.components import MODELS

    with pytest.raises(ConfigError, match="^model.size: unknown size 'huge'; choose one of tiny, base, large$"):
        MODELS.build("mosaic_bert", {"size": "huge"}, where="model", tokenizer=tokenizer, max_seq_len=64)
    with pytest.raises(ConfigError, match=r"^model.hidden_size: must be divisible by num_attention_heads \(3\), got 64$"):
        MODELS.build("hf_bert", {"hidden_size": 64, "num_attention_heads": 3}, where="model", tokenizer=tokenizer,
                     max_seq_len=64)


def test_a_section_override_replaces_a_dotted_one_edits():
    from conftest import ROOT

    tiny = ROOT / "yamls" / "tiny-cpu.yaml"
    cfg = load_config(tiny, ["scheduler={name: budget, curve: cosine}"])
    assert cfg.scheduler == {"name": "budget", "curve": "cosine"}  # no t_warmup left from the YAML
    cfg = load_config(tiny, ["model.name=mosaic_bert"])
    assert cfg.model["name"] == "mosaic_bert" and cfg.model["hidden_size"] == 64  # the rest is kept
    assert load_config(tiny, []).scheduler["t_warmup"] == "0.1dur"


def test_method_yamls_merge_onto_a_run_and_replace_named_sections(tmp_path):
    from conftest import ROOT

    from efficient_bert.pretrain.main import parse_args

    tiny, drop = ROOT / "yamls" / "tiny-cpu.yaml", ROOT / "yamls" / "methods" / "layer-drop.yaml"
    optimizer = tmp_path / "opt.yaml"
    optimizer.write_text("optimizer: {name: adamw, lr: 1.0e-4}\n")
    cfg = load_config([tiny, drop, optimizer], ["algorithms.layer_drop.gamma=5"])
    assert cfg.algorithms == {"layer_drop": {"theta_bar": 0.5, "gamma": 5}}
    assert cfg.optimizer == {"name": "adamw", "lr": 1.0e-4}  # no weight_decay left from tiny-cpu.yaml
    assert cfg.callbacks["lr_monitor"] == {}  # the rest of the run is kept
    args = parse_args([str(tiny), str(drop), "max_duration=5ba"])
    assert (args.config, args.overrides) == ([str(tiny), str(drop)], ["max_duration=5ba"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("algorithms: {layer_drop: {theta: 0.5}}\n")
    with pytest.raises(ConfigError, match="has no option 'theta' \\(did you mean 'theta_bar'\\?\\)"):
        from efficient_bert.pretrain.checks import check_components

        check_components(load_config([tiny, bad]))


def test_the_hf_peer_recipe_changes_only_its_sections_of_the_budget_recipe(tokenizer):
    from conftest import ROOT

    from efficient_bert.pretrain.checks import check_components
    from efficient_bert.pretrain.components import MODELS

    pretrain = ROOT / "yamls" / "pretrain"
    ours = load_config([pretrain / "mosaic-bert-budget.yaml"])
    peer = load_config([pretrain / "mosaic-bert-budget.yaml", pretrain / "hf-bert-budget.yaml"])
    check_components(ours)
    check_components(peer)
    assert ours.model["prenorm"] is True and ours.scheduler["curve"] == "wsd" and ours.budget.hours == 0.05
    assert peer.model == {"name": "hf_bert", "compile": True, "hidden_dropout_prob": 0.0,
                          "attention_probs_dropout_prob": 0.0}
    for key in ("train_loader", "eval_loader", "budget", "algorithms", "precision", "max_duration", "seed"):
        assert getattr(peer, key) == getattr(ours, key), key
    assert (peer.global_train_batch_size, ours.global_train_batch_size) == (256, 512)
    assert ours.eval_loader.dataset.mask_seed == 2024  # both evaluate on the same masks
    # compile: true compiles HF BERT in place, so checkpoints keep the state dict's names
    small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    compiled = MODELS.build(*MODELS.split({**peer.model, **small}, "model"), tokenizer=tokenizer, max_seq_len=64)
    eager = MODELS.build(*MODELS.split({**peer.model, **small, "compile": False}, "model"), tokenizer=tokenizer,
                         max_seq_len=64)
    assert compiled.model._compiled_call_impl is not None and eager.model._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(eager.state_dict())


@pytest.mark.parametrize("override, message", [
    ("optimizer.lr=fast", "optimizer.lr: optimizer 'decoupled_adamw' takes float, got 'fast'"),
    ("optimizer.betas=[0.9,x]", "optimizer.betas: optimizer 'decoupled_adamw' takes Sequence[float], got [0.9, 'x']"),
    ("model.hidden_size=big", "model.hidden_size: model 'hf_bert' takes int, got 'big'"),
    ("model.hidden_dropout_prob=true", "model.hidden_dropout_prob: model 'hf_bert' takes float, got True"),
    ("scheduler.t_warmup=soon", "scheduler.t_warmup: scheduler 'linear_decay_with_warmup' takes a Composer time "
                                "string (0.06dur, 500ba, 2ep, ...), got 'soon'"),
    ("max_duration=abc", "invalid value for max_duration: 'abc' is not a Composer time string (a number and a unit: "
                         "1000ba, 2ep, 128000sp, 1000000tok, 0.5dur)"),
    ("train_log_interval=2ep", "invalid value for train_log_interval: '2ep' is not a number of batches (e.g. 10ba)"),
    ("global_train_batch_size=abc", "invalid value for global_train_batch_size: Value 'abc' of type 'str' could not "
                                    "be converted to Integer"),
])
def test_wrong_value_types_are_one_line_errors_naming_the_key(override, message):
    from conftest import ROOT

    from efficient_bert.pretrain.checks import check_components

    with pytest.raises(ConfigError) as caught:
        check_components(load_config(ROOT / "yamls" / "tiny-cpu.yaml", [override]))
    assert str(caught.value).endswith(message) and "\n" not in str(caught.value)


def test_every_shipped_yaml_passes_the_checks():
    from conftest import ROOT

    from efficient_bert.pretrain.checks import check_components

    pretrain = ROOT / "yamls" / "pretrain"
    for path in [*sorted((ROOT / "yamls").glob("*.yaml")), *sorted(pretrain.glob("mosaic-*.yaml"))]:
        check_components(load_config(path))
    # the files that add to a run: each method, the budget clock, and the peers of the budget recipe
    layers = [*sorted((ROOT / "yamls" / "methods").glob("*.yaml")), *sorted((ROOT / "yamls" / "budget").glob("*.yaml"))]
    peers = [pretrain / f"{name}-budget.yaml" for name in ("hf-bert", "modernbert", "hf-modernbert")]
    for layer in [*layers, *peers]:
        check_components(load_config([pretrain / "mosaic-bert-budget.yaml", layer], il_override(layer)))


def il_override(layer) -> list[str]:
    """RHO-loss's YAML names its irreducible-loss file in a variable; no other YAML has that variable."""
    import yaml

    defines = "il_losses" in ((yaml.safe_load(layer.read_text()) or {}).get("variables") or {})
    return ["variables.il_losses=il.npz"] if defines else []


def test_no_method_yaml_forces_a_precision_and_a_missing_one_is_a_one_line_error():
    from conftest import ROOT

    from efficient_bert.pretrain.checks import check_precision

    for method in (ROOT / "yamls" / "methods").glob("*.yaml"):  # each must add to a CPU run as well
        cfg = load_config([ROOT / "yamls" / "tiny-cpu.yaml", method], il_override(method))
        assert cfg.precision == "fp32", method.name
    assert check_precision(None, "cpu") == "fp32" and check_precision(None, "gpu") == "amp_bf16"
    with pytest.raises(ConfigError, match="^precision amp_bf16 needs a GPU and this run is on the CPU: set "
                                          "precision=fp32, or leave precision unset"):
        check_precision("amp_bf16", "cpu")
    with pytest.raises(ConfigError, match="precision 'bf16' is not one of fp32, .*did you mean 'amp_bf16'"):
        check_precision("bf16", "gpu")
