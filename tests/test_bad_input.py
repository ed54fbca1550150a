"""One line for each bad input, naming the key or the file and the fix: what a new user gets wrong."""

import json
import shutil

import pytest

from conftest import ROOT, TINY_YAML, tiny_run
from efficient_bert.errors import ConfigError


@pytest.mark.parametrize("override, message", [
    ("model.vocab_size=1000", "^model.vocab_size: the tokenizer has 2000 ids, more than vocab_size 1000: leave "
                              r"vocab_size out \(it comes from the tokenizer\)$"),
    ("global_train_batch_size=0", "^global_train_batch_size must be a positive number of rows, got 0$"),
    ("load_path=/no/such/checkpoint.pt", "^load_path: no checkpoint at /no/such/checkpoint.pt; give a Composer"),
])
def test_a_bad_value_is_one_line_naming_the_key(tokenizer_dir, token_mds, override, message):
    with pytest.raises(ConfigError, match=message):
        tiny_run(tokenizer_dir, token_mds, override)


def test_a_checkpoint_of_another_model_is_one_line(tmp_path, tokenizer_dir, token_mds):
    run = tiny_run(tokenizer_dir, token_mds, f"save_folder={tmp_path / 'a'}", "max_duration=1ba", "save_interval=1ba")
    run.fit()
    run.close()
    checkpoint = next((tmp_path / "a").glob("ep*-ba1-rank0.pt"))
    with pytest.raises(ConfigError, match=rf"^load_path: {checkpoint} holds another model than this run builds \(size "
                                          r"mismatch for .*\); load it with the model section it was trained with"):
        tiny_run(tokenizer_dir, token_mds, f"save_folder={tmp_path / 'b'}", f"load_path={checkpoint}",
                 "model.hidden_size=32")


def test_an_override_is_blamed_for_its_own_bad_value_and_unknown_variables_are_refused():
    from efficient_bert.pretrain.schema import load_config

    with pytest.raises(ConfigError, match=r"^the override max_duration=abc: invalid value for max_duration: 'abc'"):
        load_config(TINY_YAML, ["max_duration=abc"])
    with pytest.raises(ConfigError, match=r"^variables.datta: no YAML file of this run defines the variable 'datta' "
                                          r"\(did you mean 'data_local'\?\); the variables are: data_local, max_seq_len, "
                                          "tokenizer$"):
        load_config(TINY_YAML, ["variables.datta=runs/mds"])


def test_every_shipped_yaml_names_its_variables_alike():
    """One naming across the YAMLs: where the data is, the tokenizer, where the run goes."""
    import yaml

    names = set()
    for path in (ROOT / "yamls").rglob("*.yaml"):
        names.update((yaml.safe_load(path.read_text()) or {}).get("variables", {}) or {})
    assert names <= {"data_local", "data_remote", "tokenizer", "run_dir", "max_seq_len", "il_losses"}, names


def test_shards_of_another_tokenizer_are_refused_before_training(tmp_path, tokenizer_dir, token_mds):
    from efficient_bert.data.corpus import find_split_files, iter_documents
    from efficient_bert.data.tokenizer import train_wordpiece

    other = tmp_path / "other-tok"
    train_wordpiece(iter_documents(find_split_files(ROOT / "data" / "sample", "validation")), other, vocab_size=500)
    with pytest.raises(ConfigError, match=rf"^train_loader: the shards under {token_mds / 'train'} hold the ids of the "
                                          rf"tokenizer {tokenizer_dir} \(vocabulary [0-9a-f]{{16}}\), not of this "
                                          r"run's .*: point the tokenizer at"):
        tiny_run(other, token_mds)


def test_fine_tuning_with_another_tokenizer_than_pretraining_is_refused(tmp_path, tokenizer_dir, token_mds):
    from efficient_bert.data.corpus import find_split_files, iter_documents
    from efficient_bert.data.tokenizer import train_wordpiece
    from efficient_bert.eval.finetune import run_job
    from efficient_bert.eval.job import FinetuneJob
    from efficient_bert.eval.readers import TaskDataError
    from efficient_bert.eval.tasks import TASKS, DataSource

    run = tiny_run(tokenizer_dir, token_mds, f"save_folder={tmp_path / 'run'}", "max_duration=1ba", "save_interval=1ba")
    run.fit()
    run.close()
    checkpoint = next((tmp_path / "run").glob("ep*-ba1-rank0.pt"))
    other = tmp_path / "other-tok"
    train_wordpiece(iter_documents(find_split_files(ROOT / "data" / "sample", "validation")), other, vocab_size=500)
    job = FinetuneJob("sst2", 1, str(checkpoint), str(tmp_path / "ft"), tokenizer=str(other), recipe=TASKS["sst2"].recipe,
                      max_train_examples=16, max_eval_examples=16, progress_bar=False)
    with pytest.raises(TaskDataError, match=rf"^the tokenizer {other} is not the one {checkpoint} was pretrained with "
                                            r"\(vocabulary [0-9a-f]{16}, not [0-9a-f]{16}\): set tokenizer:"):
        run_job(job, DataSource(glue_dir=str(ROOT / "data" / "glue")))


def test_a_json_error_names_its_position(tmp_path):
    from efficient_bert.data.convert import convert
    from efficient_bert.data.corpus import BadInputError

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "c4-train.jsonl").write_text('{"text": "fine"}\n{"text": "a\x01b\n')
    with pytest.raises(BadInputError, match=r"c4-train.jsonl:2: not valid JSON \(Invalid control character at line 1 "
                                            r"column \d+\)"):
        convert(["train"], str(tmp_path / "out"), in_root=str(tmp_path / "in"))


def test_training_on_an_empty_split_is_one_line(tmp_path, tokenizer_dir, token_mds):
    shutil.copytree(token_mds, tmp_path / "mds")
    (tmp_path / "mds" / "train" / "index.json").write_text(json.dumps({"version": 2, "shards": []}))
    with pytest.raises(ConfigError, match=rf"^train_loader: {tmp_path / 'mds' / 'train' / 'index.json'} lists no "
                                          "shards: the split is empty; convert a corpus with rows into it$"):
        tiny_run(tokenizer_dir, tmp_path / "mds")
