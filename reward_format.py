"""What a reward model reads: the single source of truth for `reward_modeling.py` and `ppo.py`.

A reward model scores the text of a prompt followed by a reply. Training (reward_modeling.py's
`tokenize_pairs`) and PPO (ppo_models.RewardScorer) both turn (prompt, reply) into token ids with the
functions of this module, so the same prompt and reply give the same ids in both (TRL #1674, #1702,
#1979: reward models scored on other text or other tokens than they were trained on):

1. `prompt_text`: PPO's prompt (a conversation, plus the dataset's prompt text when it has one) as the
   prompt string of the training data: hh-rlhf text ending in "\\n\\nAssistant:", or the plain prompt.
2. `reward_text`: prompt string + reply -> the text the model scores. The reply is stripped (generated
   replies carry stray spaces and newlines) and joined in one fixed way (`reward_text` says which).
3. `encode`: that text -> ids, with the backbone's special tokens ([CLS] ... [SEP], BOS), cut from the
   left to `max_length` (the reply, where chosen and rejected differ, survives), optionally with EOS.

`reward_format.json`, saved next to the weights, records how the model was trained:
    version            how prompt and reply were joined (`reward_text`); absent in files written before
                       version 2, which are scored as they were trained (version 1)
    format             "hh": the training prompts were hh-rlhf text (conversations); "plain": plain text
    max_length         tokens per text, longer texts cut from the left ("truncation_side": "left")
    add_special_tokens always true: the backbone's special tokens wrap the text
    append_eos         an EOS token after the text (decoder reward models whose pad is not EOS)
    reward_mean, reward_std, base_model   eval-set reward statistics (PPO's --normalize_reward), backbone
"""

from __future__ import annotations

import sys
from pathlib import Path

import cmdline
import hh_data
import runtime
import scoring

REWARD_FORMAT_FILE = "reward_format.json"
# 1: replies stripped and appended to plain prompts with nothing between ("What is 2+2?It is 4.").
# 2: a newline between a plain prompt and its reply; an hh-rlhf prompt always ends in its Assistant marker.
FORMAT_VERSION = 2

ENCODER_MODEL_TYPES = ("bert", "distilbert", "roberta", "deberta", "deberta-v2", "electra")


def reward_text(prompt: str, reply: str, version: int = FORMAT_VERSION) -> str:
    """The text a reward model scores for `reply` after `prompt` (both as in the training data).

    hh-rlhf prompts: the reply follows "\\n\\nAssistant:" after one space, the form of every hh-rlhf
    dialogue. A prompt that ends on another turn gets the marker, taken from the reply where the reply
    starts with it (message lists render their marker on the reply's side: "\\n\\nAssistant: It is 4.").
    Plain prompts: a newline separates prompt and reply, unless the prompt already ends in whitespace
    (prompts split off a whole text keep the text's own space). An empty reply leaves the prompt alone."""
    if version < 2:
        return _reward_text_v1(prompt, reply)
    if hh_data.is_hh(prompt) and not prompt.endswith(hh_data.ASSISTANT):
        prompt, reply = prompt + hh_data.ASSISTANT, reply.removeprefix(hh_data.ASSISTANT)
    reply = reply.strip()
    if not reply:
        return prompt
    if prompt.endswith(hh_data.ASSISTANT):
        return f"{prompt} {reply}"
    if not prompt or prompt[-1].isspace():
        return prompt + reply
    return f"{prompt}\n{reply}"


def _reward_text_v1(prompt: str, reply: str) -> str:
    """Before version 2: the stripped reply after the prompt, one space after an Assistant marker."""
    reply = reply.strip()
    if prompt.endswith(hh_data.ASSISTANT):
        return f"{prompt} {reply}" if reply else prompt
    return prompt + reply


def prompt_text(prompt: dict, fmt: dict) -> str:
    """A PPO prompt ({"turns", "text"}, ppo_data.row_to_prompt) as the reward model's training prompt.

    `text` is the prompt string the training data would hold for the same row (hh-rlhf text or plain
    text; None when unknown, e.g. after the policy's prompt was cut). A model trained on hh-rlhf text
    reads every other prompt as an hh-rlhf conversation; a model trained on plain prompts reads the
    prompt string, else the last turn's words."""
    text = prompt.get("text")
    if fmt.get("format", "hh") == "hh":
        if text is not None and hh_data.is_hh(text):
            return text
        return hh_data.render_hh(prompt["turns"], add_generation_prompt=True)
    return text if text is not None else prompt["turns"][-1]["content"]


def special_token_wrap(tokenizer) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after the text (e.g. BERT's [CLS] ... [SEP])."""
    probe = "hello world"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    raise ValueError(f"cannot locate the text inside the special tokens of {type(tokenizer).__name__}")


def encode_left_truncated(
    tokenizer, texts: list[str], max_length: int | None, append_eos: bool = False
) -> tuple[list[list[int]], list[bool]]:
    """Tokenize with the backbone's special tokens; keep the *end* of over-long texts.

    Preference pairs differ in their last reply, so truncation drops the oldest turns and keeps the
    special tokens at both ends intact: the tokenizer's own `truncation_side="left"` (set on it, so a
    saved tokenizer cuts as its model was trained), which equals cutting the text's ids to their last
    `max_length - len(special tokens)` (tests/test_libraries.py)."""
    prefix, suffix = special_token_wrap(tokenizer)
    eos = [tokenizer.eos_token_id] if append_eos else []
    limit = None if max_length is None else max_length - len(eos)
    if limit is not None and limit - len(prefix) - len(suffix) < 1:
        raise cmdline.UsageError(
            f"max_length={max_length} leaves no room for text between the special tokens"
        )
    tokenizer.truncation_side = "left"
    enc = tokenizer(texts, truncation=limit is not None, max_length=limit)
    if enc.encodings is not None:  # a Rust tokenizer keeps the ids it cut
        truncated = [bool(e.overflowing) for e in enc.encodings]
    else:
        truncated = (
            [len(ids) > limit for ids in tokenizer(texts)["input_ids"]]
            if limit is not None
            else [False] * len(texts)
        )
    return [ids + eos for ids in enc["input_ids"]], truncated


def encode(
    tokenizer, fmt: dict, prompts: list[str], replies: list[str]
) -> tuple[list[list[int]], list[bool]]:
    """Ids the reward model reads for each (training prompt string, reply), and which were cut."""
    texts = [reward_text(p, r, fmt.get("version", 1)) for p, r in zip(prompts, replies)]
    return encode_left_truncated(tokenizer, texts, fmt.get("max_length"), fmt.get("append_eos", False))


def reward_format_for(tokenizer, model, pairs: list[dict], max_length: int | None) -> dict:
    """How a model about to be trained on `pairs` reads text: the fields of reward_format.json."""
    _, suffix = special_token_wrap(tokenizer)
    # Decoder reward models read the score at the last non-pad token; an EOS there marks the end of
    # the reply (TRL appends one too). Where pad == EOS the EOS would be taken for padding, so none.
    append_eos = (
        not getattr(model.config, "is_encoder_decoder", False)
        and model.config.model_type not in ENCODER_MODEL_TYPES
        and tokenizer.eos_token_id is not None
        and tokenizer.eos_token_id != tokenizer.pad_token_id
        and tokenizer.eos_token_id not in suffix
    )
    hh = all(hh_data.is_hh(p["prompt"]) for p in pairs[:200])
    return {
        "version": FORMAT_VERSION,
        "format": "hh" if hh else "plain",
        "max_length": max_length,
        "truncation_side": "left",
        "add_special_tokens": True,
        "append_eos": bool(append_eos),
    }


def load_reward_format(folder: str | Path, tokenizer, config) -> dict:
    """The folder's reward_format.json; for a model without one (not trained by reward_modeling.py),
    hh-rlhf text of the current version, cut from the left to the backbone's limit, no EOS."""
    path = Path(folder) / REWARD_FORMAT_FILE
    if path.is_file():
        return runtime.read_json(path)
    print(
        f"[reward] {folder} has no {REWARD_FORMAT_FILE}: assuming hh-rlhf text, left truncation",
        file=sys.stderr,
    )
    return {
        "version": FORMAT_VERSION,
        "format": "hh",
        "max_length": scoring.model_max_length(tokenizer, config),
        "append_eos": False,
    }
