"""Model limits, the pad token, and batched reward scoring (what a reward model reads, and its
tokenization, is defined in reward_format.py)."""

from __future__ import annotations


def model_max_length(tokenizer, config) -> int | None:
    """The longest sequence a backbone takes: position table size, else the tokenizer's limit."""
    limits = [getattr(config, k, None) for k in ("max_position_embeddings", "n_positions")]
    limits = [v for v in limits if isinstance(v, int) and v > 0]
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < 1_000_000:
        limits.append(tok_limit)
    return min(limits) if limits else None


def score_sequences(model, sequences, pad_token_id, batch_tokens=16384):
    """Reward of each token-id sequence, in batches of similar length (right-padded, no grad)."""
    import torch

    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    scores = torch.empty(len(sequences))
    device = next(model.parameters()).device
    start = 0
    with torch.inference_mode():
        while start < len(order):
            longest = len(sequences[order[start]])
            end = start
            while (
                end < len(order)
                and (end - start + 1) * max(longest, len(sequences[order[end]])) <= batch_tokens
            ):
                longest = max(longest, len(sequences[order[end]]))
                end += 1
            end = max(end, start + 1)
            batch = [sequences[i] for i in order[start:end]]
            width = max(len(s) for s in batch)
            ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, seq in enumerate(batch):
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            scores[order[start:end]] = logits[:, 0].float().cpu()
            start = end
    return scores


def ensure_pad_token(tokenizer, model=None) -> None:
    """Decoder tokenizers (GPT-2, Llama) often have no pad token: reuse EOS, as is customary.

    Padding is always located by attention mask or position, never by comparing ids to pad."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"{type(tokenizer).__name__} has neither a pad nor an EOS token; set --pad_token"
            )
        tokenizer.pad_token = tokenizer.eos_token
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
