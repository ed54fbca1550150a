"""GLUE/SuperGLUE fine-tuning: metrics against sklearn/scipy, every reader on rows in the official
formats, the scorers and the choice loss on planted values, config checks, and real fine-tuning runs
on the bundled SST-2 slice (data/glue)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from efficient_bert.eval import TASKS, DataSource, Example, FinetuneJob, TaskDataError, run_job
from efficient_bert.eval import metrics as M
from efficient_bert.eval.finetune import group_choice_loss
from efficient_bert.eval.finetune_config import load_finetune_config
from efficient_bert.eval.scheduling import plan
from efficient_bert.eval.suite import run_suite
from efficient_bert.eval.tasks import Predictions
from efficient_bert.errors import ConfigError, FineTuningDiverged

ROOT = Path(__file__).resolve().parents[1]
GLUE_SLICE = ROOT / "data" / "glue"


# --- metrics ----------------------------------------------------------------------------------------
def test_metrics_match_sklearn_and_scipy():
    from scipy import stats
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    for n_classes in (2, 3):
        y, p = rng.integers(0, n_classes, 300), rng.integers(0, n_classes, 300)
        p[:150] = y[:150]  # correlated, so the scores are not all near 0
        assert M.accuracy(p, y) == pytest.approx(skm.accuracy_score(y, p), abs=1e-12)
        assert M.matthews_corrcoef(p, y) == pytest.approx(skm.matthews_corrcoef(y, p), abs=1e-12)
        assert M.f1_macro(p, y, n_classes) == pytest.approx(skm.f1_score(y, p, average="macro"), abs=1e-12)
    assert M.f1_binary(p[p < 2], y[p < 2]) == pytest.approx(skm.f1_score(y[p < 2] == 1, p[p < 2] == 1), abs=1e-12)
    assert M.matthews_corrcoef(np.zeros(10, int), rng.integers(0, 2, 10)) == 0.0  # constant predictions
    x = rng.normal(size=200)
    z = x + rng.normal(size=200)
    assert M.pearson(x, z) == pytest.approx(stats.pearsonr(x, z)[0], abs=1e-12)
    assert M.spearman(x, z) == pytest.approx(stats.spearmanr(x, z)[0], abs=1e-12)
    ties_x, ties_z = np.round(x), np.round(z * 2) / 2  # many ties: average ranks
    assert M.spearman(ties_x, ties_z) == pytest.approx(stats.spearmanr(ties_x, ties_z)[0], abs=1e-12)


def test_group_and_answer_metrics_by_hand():
    # MultiRC EM: question 1 all right, question 2 one wrong
    assert M.exact_match_by_group([1, 0, 1, 1], [1, 0, 1, 0], [1, 1, 2, 2]) == 0.5
    assert M.normalize_answer("The  U.S. Army!") == "us army"
    assert M.token_f1("the red car", "a red bus") == pytest.approx(0.5)  # 1 common of 2 and 2 tokens
    scores = M.record_scores(["Barack Obama", "Paris"], [("Obama",), ("London", "paris")])
    assert scores == {"f1": pytest.approx((2 / 3 + 1) / 2), "exact_match": 0.5}


# --- readers ----------------------------------------------------------------------------------------
GLUE_ROWS = {  # task: (file text, expected first example) in the official layouts
    "cola": ("src1\t1\t\tThe cat sat on the mat.\nsrc1\t0\t*\tCat the mat on sat.\n",
             Example("The cat sat on the mat.", None, 1)),
    "sst2": ("sentence\tlabel\na gripping , funny film \t1\n", Example("a gripping , funny film ", None, 1)),
    "mrpc": ("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t1\t2\tHe left early.\tHe stayed late.\n",
             Example("He left early.", "He stayed late.", 0)),
    "stsb": ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
             "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane takes off.\tA jet takes off.\t4.200\n",
             Example("A plane takes off.", "A jet takes off.", 4.2)),
    "qqp": ("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
            "7\t1\t2\tHow do I cook rice?\tHow is rice cooked?\t1\n",
            Example("How do I cook rice?", "How is rice cooked?", 1)),
    "mnli": ("index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label\n"
             "0\t1\t1n\tfiction\t(a)\t(b)\t(a)\t(b)\tShe ran home.\tShe was outside.\tneutral\tneutral\n",
             Example("She ran home.", "She was outside.", 1)),
    "qnli": ("index\tquestion\tsentence\tlabel\n0\tWho wrote it?\tIt was written by Ann.\tentailment\n",
             Example("Who wrote it?", "It was written by Ann.", 0)),
    "rte": ("index\tsentence1\tsentence2\tlabel\n3\tA \"quoted\" word.\tA word.\tnot_entailment\n",
            Example('A "quoted" word.', "A word.", 1)),
    "wnli": ("index\tsentence1\tsentence2\tlabel\n0\tThe drain is clogged with hair.\tThe hair is clogged.\t0\n",
             Example("The drain is clogged with hair.", "The hair is clogged.", 0)),
}


@pytest.mark.parametrize("name", list(GLUE_ROWS))
def test_glue_readers(tmp_path, name):
    task = TASKS[name]
    text, expected = GLUE_ROWS[name]
    for split, file in {"train": task.train_file, **task.eval_splits}.items():
        (tmp_path / task.folder).mkdir(exist_ok=True)
        (tmp_path / task.folder / file).write_text(text)
        assert DataSource(glue_dir=str(tmp_path)).read(task, split)[0] == expected


def test_glue_reader_without_header_and_bad_rows(tmp_path):
    # GLUE mirrors without the header row: columns by position (as some copies of MRPC and STS-B are)
    (tmp_path / "MRPC").mkdir()
    (tmp_path / "MRPC" / "train.tsv").write_text("1\t5\t6\tA b.\tA c.\n0\t7\t8\tD e.\tF g.\n")
    rows = DataSource(glue_dir=str(tmp_path)).read(TASKS["mrpc"], "train")
    assert rows == [Example("A b.", "A c.", 1), Example("D e.", "F g.", 0)]
    (tmp_path / "MRPC" / "dev.tsv").write_text("1\t5\t6\tA b.\tA c.\nyes\t7\t8\tD e.\tF g.\n1\t2\n")
    with pytest.raises(TaskDataError, match=r"dev.tsv:2: label 'yes' is not one of 0, 1.*skip_bad_rows"):
        DataSource(glue_dir=str(tmp_path)).read(TASKS["mrpc"], "dev")
    assert len(DataSource(glue_dir=str(tmp_path), skip_bad_rows=True).read(TASKS["mrpc"], "dev")) == 1
    with pytest.raises(TaskDataError, match=r"no dev data for rte: looked for .*RTE/dev.tsv.*glue_dir"):
        DataSource(glue_dir=str(tmp_path)).read(TASKS["rte"], "dev")
    with pytest.raises(TaskDataError, match="glue_dir is not set"):
        DataSource().read(TASKS["rte"], "dev")


SUPERGLUE_ROWS = {
    "boolq": ({"question": "is the sky blue", "passage": "The sky is blue.", "idx": 0, "label": True},
              [Example("is the sky blue", "The sky is blue.", 1)]),
    "cb": ({"premise": "It rained.", "hypothesis": "It was dry.", "label": "contradiction", "idx": 0},
           [Example("It rained.", "It was dry.", 1)]),
    "copa": ({"premise": "The man fell.", "choice1": "He slipped.", "choice2": "He sang.", "question": "cause",
              "label": 0, "idx": 0},
             [Example("The man fell. What was the cause?", "He slipped.", 1.0, 0),
              Example("The man fell. What was the cause?", "He sang.", 0.0, 0)]),
    "sg_rte": ({"premise": "A dog barks.", "hypothesis": "An animal barks.", "label": "entailment", "idx": 0},
               [Example("A dog barks.", "An animal barks.", 0)]),
    "wic": ({"word": "bank", "sentence1": "The river bank.", "sentence2": "The bank loan.", "start1": 10, "end1": 14,
             "start2": 4, "end2": 8, "label": False, "idx": 0},
            [Example("bank: The river bank.", "The bank loan.", 0)]),
    "wsc": ({"text": "Tom hit Sam because he was angry.", "target": {"span1_text": "Tom", "span1_index": 0,
             "span2_text": "he", "span2_index": 4}, "label": True, "idx": 0},
            [Example("Tom hit Sam because he was angry.", 'Does "he" refer to "Tom"?', 1)]),
    "multirc": ({"idx": 0, "passage": {"text": "Ann has two cats.", "questions": [
                    {"question": "What does Ann have?", "idx": 0, "answers": [
                        {"text": "cats", "idx": 0, "label": 1}, {"text": "dogs", "idx": 1, "label": 0}]},
                    {"question": "How many?", "idx": 1, "answers": [{"text": "two", "idx": 2, "label": 1}]}]}},
                [Example("Ann has two cats.", "What does Ann have? cats", 1, 0),
                 Example("Ann has two cats.", "What does Ann have? dogs", 0, 0),
                 Example("Ann has two cats.", "How many? two", 1, 1)]),
    "record": ({"idx": 0, "passage": {"text": "Paris and Rome.@highlight\nRome won",
                                      "entities": [{"start": 0, "end": 4}, {"start": 10, "end": 13},
                                                   {"start": 26, "end": 29}]},
                "qas": [{"query": "@placeholder is in France.", "idx": 0,
                         "answers": [{"start": 0, "end": 4, "text": "Paris"}]}]},
               [Example("Paris and Rome.- Rome won", "Paris is in France.", 1.0, 0, "Paris", ("Paris",)),
                Example("Paris and Rome.- Rome won", "Rome is in France.", 0.0, 0, "Rome", ("Paris",))]),
}


@pytest.mark.parametrize("name", list(SUPERGLUE_ROWS))
def test_superglue_readers(tmp_path, name):
    task = TASKS[name]
    record, expected = SUPERGLUE_ROWS[name]
    (tmp_path / task.folder).mkdir()
    (tmp_path / task.folder / "val.jsonl").write_text(json.dumps(record) + "\n")
    assert DataSource(superglue_dir=str(tmp_path)).read(task, "val") == expected


def test_superglue_test_split_without_labels_is_refused(tmp_path):
    (tmp_path / "BoolQ").mkdir()
    (tmp_path / "BoolQ" / "train.jsonl").write_text('{"question": "q", "passage": "p", "idx": 0}\n')
    with pytest.raises(TaskDataError, match=r"train.jsonl:1: no 'label' field"):
        DataSource(superglue_dir=str(tmp_path)).read(TASKS["boolq"], "train")


def test_hf_datasets_saved_to_disk(tmp_path):
    import datasets

    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"premise": ["A.", "B."], "hypothesis": ["C.", "D."], "label": [2, 0]}),
        "validation_matched": datasets.Dataset.from_dict({"premise": ["E."], "hypothesis": ["F."], "label": [1]}),
    }).save_to_disk(str(tmp_path / "MNLI"))
    source = DataSource(glue_dir=str(tmp_path))
    assert source.read(TASKS["mnli"], "train") == [Example("A.", "C.", 2), Example("B.", "D.", 0)]
    assert source.read(TASKS["mnli"], "dev_matched") == [Example("E.", "F.", 1)]
    with pytest.raises(TaskDataError, match="not available offline"):
        source.read(TASKS["mnli"], "dev_mismatched")


# --- scorers and loss -----------------------------------------------------------------------------
def test_scorers_on_planted_logits():
    copa = SUPERGLUE_ROWS["copa"][1] + [replace(e, group=1, label=1.0 - e.label) for e in SUPERGLUE_ROWS["copa"][1]]
    # group 0 picks its gold first candidate; group 1 picks the first candidate, which is wrong there
    assert TASKS["copa"].score(Predictions(copa, np.array([[2.0], [1.0], [3.0], [0.0]]))) == {"accuracy": 0.5}
    record = SUPERGLUE_ROWS["record"][1]
    assert TASKS["record"].score(Predictions(record, np.array([[0.0], [1.0]]))) == {"f1": 0.0, "exact_match": 0.0}
    multirc = SUPERGLUE_ROWS["multirc"][1]
    scores = TASKS["multirc"].score(Predictions(multirc, np.array([[0, 1], [0, 1], [0, 1]])))
    assert scores == {"f1a": pytest.approx(0.8), "exact_match": 0.5}  # tp 2, fp 1, fn 0
    stsb = [Example("a", "b", y) for y in (1.0, 2.0, 3.0)]
    assert TASKS["stsb"].score(Predictions(stsb, np.array([[0.1], [0.2], [0.3]]))) == {
        "pearson": pytest.approx(1.0), "spearman": pytest.approx(1.0)}
    assert TASKS["cola"].majority_score([Example("a", label=1)] * 3 + [Example("b", label=0)],
                                        [Example("c", label=0), Example("d", label=1)]) == {"matthews_corr": 0.0}


def test_group_choice_loss_is_the_softmax_cross_entropy_per_group():
    scores = torch.tensor([1.0, 2.0, 0.5, -1.0, 3.0])
    group = torch.tensor([0, 0, 0, 1, 1])
    gold = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0])  # group 1: both candidates gold -> loss 0
    expected = (-torch.log_softmax(scores[:3], 0)[1] + 0.0) / 2
    assert group_choice_loss(scores, gold, group).item() == pytest.approx(expected.item(), abs=1e-6)


# --- config ---------------------------------------------------------------------------------------
def write_yaml(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_config_errors_and_plan(tmp_path):
    base = "checkpoint: ck\nresults_dir: out\n"
    with pytest.raises(ConfigError, match=r"unknown task 'rtee' \(did you mean 'rte'\?\)"):
        load_finetune_config([write_yaml(tmp_path / "a.yaml", base + "tasks: {rtee: {}}\n")])
    with pytest.raises(ConfigError, match=r"unknown key 'tasks.rte.learning_rate'"):
        load_finetune_config([write_yaml(tmp_path / "b.yaml", base + "tasks: {rte: {learning_rate: 1}}\n")])
    cfg = load_finetune_config([write_yaml(tmp_path / "c.yaml", base + "tasks: {rte: {}}\n")])
    with pytest.raises(ConfigError, match=r"rte starts from the mnli-fine-tuned model.*start_from: null"):
        plan(cfg)
    cfg = load_finetune_config([write_yaml(tmp_path / "d.yaml", base + "tasks: {rte: {lr: 2.0e-5}, mnli: {}}\n")],
                               ["seeds=[1,2]"])
    jobs = plan(cfg)
    assert [(j.task, j.seed, j.save_model) for j in jobs] == [("mnli", 1, True), ("mnli", 2, False),
                                                               ("rte", 1, False), ("rte", 2, False)]
    assert jobs[2].checkpoint == str(Path("out") / "mnli" / "seed-1" / "model") and jobs[0].checkpoint == "ck"
    assert jobs[2].recipe.lr == 2.0e-5 and jobs[2].recipe.epochs == 3 and jobs[0].recipe.batch_size == 48


def test_a_failed_run_never_blocks_its_own_rerun(tmp_path):
    from efficient_bert.eval.scheduling import check_inputs

    root = Path(__file__).resolve().parents[1]
    checkpoint = tmp_path / "ep0-ba30-rank0.pt"
    checkpoint.write_bytes(b"")
    args = [f"checkpoint={checkpoint}", f"results_dir={tmp_path / 'out'}", "variables.run_dir=unused"]
    cfg = load_finetune_config([root / "yamls" / "finetune" / "demo.yaml"], args)
    with pytest.raises(ConfigError, match=r"ep0-ba30-rank0.pt is a Composer checkpoint, which carries no tokenizer: "
                                          r"set tokenizer=<the tokenizer folder"):
        check_inputs(cfg, plan(cfg))  # before any job starts and writes into results_dir
    # what a run that failed in its jobs leaves behind: logs and a summary of errors, no result.json
    for job in plan(cfg):
        Path(job.out_dir).mkdir(parents=True)
        (Path(job.out_dir) / "log.txt").write_text("TaskDataError: ...\n")
    (tmp_path / "out" / "results.json").write_text('{"tasks": {}}')
    fixed = load_finetune_config([root / "yamls" / "finetune" / "demo.yaml"], [*args, "tokenizer=tok"])
    check_inputs(fixed, plan(fixed))  # the corrected rerun may go ahead


# --- fine-tuning on real text -----------------------------------------------------------------------
def tiny_export(folder, tokenizer, architecture: str):
    """A tiny random-init model saved as an HF folder with its tokenizer (what the hf_export callback
    writes): Mosaic BERT, or the ModernBERT architecture in transformers' own format."""
    from efficient_bert.model.modernbert import build_modernbert
    from efficient_bert.model.mosaic_bert import build_mosaic_bert

    torch.manual_seed(0)
    build = build_mosaic_bert if architecture == "mosaic_bert" else build_modernbert
    build(tokenizer, size="tiny").model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def random_init_checkpoint(tmp_path_factory, tokenizer):
    return tiny_export(tmp_path_factory.mktemp("ckpt") / "hf", tokenizer, "mosaic_bert")


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["mosaic_bert", "modernbert"])
def test_tiny_finetune_beats_the_majority_class_on_sst2(tmp_path, tokenizer, random_init_checkpoint, architecture):
    checkpoint = random_init_checkpoint if architecture == "mosaic_bert" else \
        tiny_export(tmp_path / "modernbert", tokenizer, architecture)
    recipe = replace(TASKS["sst2"].recipe, epochs=4, lr=3e-4, batch_size=32, max_seq_len=64)
    result = run_job(FinetuneJob("sst2", 19, str(checkpoint), str(tmp_path / "sst2"), recipe=recipe,
                                 progress_bar=False), DataSource(glue_dir=str(GLUE_SLICE)))
    assert result["train_examples"] == 2000 and result["eval_examples"] == {"dev": 872}
    majority = result["majority_class"]["dev"]["accuracy"]
    assert majority == pytest.approx(444 / 872)  # GLUE SST-2 dev: 444 positive; the slice is mostly positive
    assert result["metrics"]["dev"]["accuracy"] > majority + 0.10
    assert json.loads((tmp_path / "sst2" / "result.json").read_text())["metrics"] == result["metrics"]


def write_stsb_from_sst2(folder: Path, splits: dict[str, list[str]]) -> None:
    """STS-B-format files (``split`` -> SST-2 rows): each sentence paired with itself, score = 5 x label."""
    folder.mkdir(parents=True)
    for split, rows in splits.items():
        (folder / f"{split}.tsv").write_text("".join(
            f"{i}\tg\tf\t2012\t{i}\tnone\tnone\t{s}\t{s}\t{5.0 * int(y):.3f}\n"
            for i, (s, y) in enumerate(r.split("\t") for r in rows)))


def test_non_finite_predictions_fail_the_job_instead_of_scoring_nan(tmp_path, tokenizer):
    from safetensors.torch import load_file, save_file

    folder = tiny_export(tmp_path / "hf", tokenizer, "mosaic_bert")
    weights = load_file(folder / "model.safetensors")
    name = "bert.embedding_norm.weight"
    weights[name][0] = float("nan")  # one poisoned weight, as a diverged pretraining leaves them
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    recipe = replace(TASKS["stsb"].recipe, epochs=1, batch_size=16, max_seq_len=32)
    rows = (GLUE_SLICE / "SST-2" / "dev.tsv").read_text().splitlines()[1:41]
    write_stsb_from_sst2(tmp_path / "glue" / "STS-B", {"train": rows, "dev": rows})
    with pytest.raises(FineTuningDiverged, match=r"^stsb seed 3: 40 of 40 predictions on dev are not finite \(its "
                                                 r"training loss was first not finite at batch 1 of 3\): the "
                                                 r"fine-tuning diverged or the checkpoint holds non-finite weights"):
        run_job(FinetuneJob("stsb", 3, str(folder), str(tmp_path / "out"), recipe=recipe, progress_bar=False),
                DataSource(glue_dir=str(tmp_path / "glue")))
    assert not (tmp_path / "out" / "result.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("parallel", [False, True])
def test_suite_starts_from_a_finetuned_model_and_reports(tmp_path, random_init_checkpoint, parallel, capsys):
    """SST-2 first, then STS-B-format data (real SST-2 sentences, score = 5 x label) from the SST-2 model,
    whose 2-label head is replaced by a 1-output regression head. ``parallel`` runs one process per job
    slot, two slots on one GPU id as compare packs GLUE on one GPU (here CPU processes)."""
    glue = tmp_path / "glue"
    lines = (GLUE_SLICE / "SST-2" / "dev.tsv").read_text().splitlines()[1:]
    write_stsb_from_sst2(glue / "STS-B", {"train": lines[:200], "dev": lines[200:300]})
    (glue / "SST-2").symlink_to(GLUE_SLICE / "SST-2")
    yaml = write_yaml(tmp_path / "ft.yaml", f"""
checkpoint: {random_init_checkpoint}
results_dir: {tmp_path / 'results'}
glue_dir: {glue}
tasks:
  sst2: {{epochs: 1, batch_size: 32, max_seq_len: 32}}
  stsb: {{epochs: 1, start_from: sst2, max_seq_len: 32}}
seeds: [3, 4]
max_train_examples: 200
max_eval_examples: 100
device: cpu
parallel: {str(parallel).lower()}
gpus: [0]
jobs_per_gpu: 2
progress_bar: false
""")
    summary = run_suite(load_finetune_config([yaml]))
    results = tmp_path / "results"
    assert (results / "sst2" / "seed-3" / "model" / "config.json").is_file()
    assert not (results / "sst2" / "seed-4" / "model").exists()  # only the first seed is a source
    stsb = json.loads((results / "stsb" / "seed-4" / "result.json").read_text())
    assert stsb["checkpoint"] == str(results / "sst2" / "seed-3" / "model")
    assert set(stsb["metrics"]["dev"]) == {"pearson", "spearman"} and stsb["majority_class"]["dev"] is None
    assert summary["tasks"]["sst2"]["seeds"] == [3, 4] and not summary["tasks"]["sst2"]["errors"]
    accs = [summary["tasks"]["sst2"]["per_seed"][s]["dev"]["accuracy"] for s in (3, 4)]
    assert summary["tasks"]["sst2"]["median"]["dev"]["accuracy"] == pytest.approx(sum(accs) / 2)
    score = (summary["tasks"]["sst2"]["score"] + summary["tasks"]["stsb"]["score"]) / 2
    assert summary["averages"]["glue"] == {"average": pytest.approx(score), "tasks": 2}
    assert all(math.isfinite(v) for v in summary["tasks"]["stsb"]["median"]["dev"].values())
    report = (results / "results.md").read_text()
    assert "| sst2 | dev | accuracy |" in report and "**GLUE average** (2 tasks" in report
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[efficient-bert] sst2 seed")]
    # one line as each job ends, with its score (parallel jobs end in either order)
    assert sorted(line.rsplit(" (", 1)[0] for line in said) == [
        f"[efficient-bert] sst2 seed {s}: dev accuracy {100 * a:.2f}" for s, a in zip((3, 4), accs)]
    if parallel:  # both seeds of each task ran as jobs of their own, side by side on the one GPU id
        assert all((results / t / f"seed-{s}" / "log.txt").is_file() for t in ("sst2", "stsb") for s in (3, 4))
    # a second run refuses to replace the results; resume keeps them and reruns nothing
    with pytest.raises(ConfigError, match=r"results_dir .* holds 4 finished job\(s\) \(sst2 seed 3, ...\); set resume"):
        run_suite(load_finetune_config([yaml]))
    before = (results / "sst2" / "seed-3" / "result.json").stat().st_mtime_ns
    assert run_suite(load_finetune_config([yaml], ["resume=true"]))["averages"] == summary["averages"]
    assert (results / "sst2" / "seed-3" / "result.json").stat().st_mtime_ns == before


@pytest.mark.slow
def test_hf_bert_and_composer_checkpoints_and_multiple_choice(tmp_path, tokenizer, tokenizer_dir):
    """The other checkpoint kinds: an HF BERT folder, a Composer .pt (tokenizer given separately);
    and the multiple-choice path (COPA's format) through the trainer."""
    from efficient_bert.model.hf_bert import build_hf_bert

    torch.manual_seed(0)
    composer_model = build_hf_bert(tokenizer, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=64)
    hf_dir = tmp_path / "hf-bert"
    composer_model.model.save_pretrained(str(hf_dir))
    tokenizer.save_pretrained(str(hf_dir))
    pt = tmp_path / "ck.pt"  # the layout Composer writes: state.model holds the wrapper's state dict
    torch.save({"state": {"model": composer_model.state_dict()}}, pt)
    source = DataSource(glue_dir=str(GLUE_SLICE))
    quick = replace(TASKS["sst2"].recipe, epochs=1, batch_size=16, max_seq_len=32)
    results = [run_job(FinetuneJob("sst2", 1, str(checkpoint), str(tmp_path / checkpoint.stem), tokenizer=tok,
                                   recipe=quick, max_train_examples=64, max_eval_examples=32, progress_bar=False),
                       source)
               for checkpoint, tok in ((hf_dir, None), (pt, str(tokenizer_dir)))]
    for result in results:
        assert result["train_examples"] == 64 and result["eval_examples"] == {"dev": 32}
        assert (result["metrics"]["dev"]["accuracy"] * 32) % 1 == 0  # a count of 32 dev sentences
    # both kinds of file give the classifier the same pretrained encoder (the pooler is new in both)
    from efficient_bert.model.checkpoint import load_pretrained

    from_hf, from_pt = ({k: v for k, v in load_pretrained(path, "sequence_classification", num_labels=2)
                         .bert.state_dict().items() if not k.startswith("pooler.")} for path in (hf_dir, pt))
    assert from_hf.keys() == from_pt.keys() and [k for k in from_hf if not torch.equal(from_hf[k], from_pt[k])] == []
    with pytest.raises(TaskDataError, match="a Composer checkpoint carries none"):
        run_job(FinetuneJob("sst2", 1, str(pt), str(tmp_path / "x"), recipe=quick, max_train_examples=8,
                            progress_bar=False), source)

    sentences = [line.split("\t")[0] for line in (GLUE_SLICE / "SST-2" / "dev.tsv").read_text().splitlines()[1:41]]
    (tmp_path / "sg" / "COPA").mkdir(parents=True)
    for split in ("train", "val"):
        rows = [{"premise": sentences[i], "choice1": sentences[i + 1], "choice2": sentences[i + 2],
                 "question": "cause" if i % 2 else "effect", "label": i % 2, "idx": i} for i in range(0, 36, 3)]
        (tmp_path / "sg" / "COPA" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_job(FinetuneJob("copa", 1, str(hf_dir), str(tmp_path / "copa"), recipe=replace(quick, epochs=2),
                                 progress_bar=False), DataSource(superglue_dir=str(tmp_path / "sg")))
    assert result["train_examples"] == 24 and result["eval_examples"] == {"val": 24}  # 12 questions x 2 choices
    assert result["metrics"]["val"]["accuracy"] in {k / 12 for k in range(13)}  # scored per question
