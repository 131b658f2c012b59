"""Prompts for ppo.py: every source becomes a conversation (a list of turns) plus, when the dataset
has it, the verbatim prompt text, so the reward model sees exactly the text it was trained on.

Also the order prompts are drawn in (`PromptStream`, resumable) and the tokens that end a response.
Tested in tests/test_ppo.py and tests/test_data.py.
"""

from __future__ import annotations

from pathlib import Path

import torch

import cmdline
import hh_data

PROMPT_COLUMNS = ("prompt", "query", "user", "question", "instruction")


def row_to_prompt(row: dict) -> dict | None:
    """{"turns": [...], "text": ...}, or None for a row without a prompt. `turns` is what the policy
    reads; `text` is the prompt string reward_modeling.py trains on for the same row (hh-rlhf text, a
    plain prompt verbatim, message lists rendered in hh-rlhf form), which `reward_format.prompt_text`
    gives the reward model."""
    chosen, rejected = hh_data.as_text(row.get("chosen")), hh_data.as_text(row.get("rejected"))
    if row.get("prompt") is None and chosen is not None and rejected is not None:
        # As hh_data.clean_preference_rows: without a prompt column, the prompt is the shared conversation.
        prompt_text, _, _ = hh_data.split_prompt(chosen, rejected)
        if not prompt_text.endswith(hh_data.ASSISTANT):
            return None
        return {"turns": hh_data.parse_hh(prompt_text[: -len(hh_data.ASSISTANT)]), "text": prompt_text}
    for col in PROMPT_COLUMNS:
        value = row.get(col)
        if isinstance(value, str) and value.strip():
            if hh_data.is_hh(value):
                text = value if value.endswith(hh_data.ASSISTANT) else value + hh_data.ASSISTANT
                return {"turns": hh_data.parse_hh(text[: -len(hh_data.ASSISTANT)]), "text": text}
            return {"turns": [{"role": "user", "content": value.strip()}], "text": value}
        if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
            turns = [{"role": m["role"], "content": str(m["content"])} for m in value]
            while turns and turns[-1]["role"] == "assistant":
                turns.pop()
            if not turns:
                return None
            hh = all(t["role"] in hh_data.MARKER_OF_ROLE for t in turns)  # hh-rlhf has no system turn
            return {
                "turns": turns,
                "text": hh_data.render_hh(turns, add_generation_prompt=True) if hh else None,
            }
    return None


def load_prompts(source: str, split: str, data_dir: str | None) -> tuple[list[dict], list[hh_data.Origin]]:
    """The prompts of a split, and the origin of each (see `hh_data.load_rows`): rows without a prompt
    are dropped from both."""
    path = Path(source)
    if path.is_file() and path.suffix == ".txt":
        if data_dir:
            raise cmdline.UsageError(f"--data_dir={data_dir} names subset folders, but {source} is a file")
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        _, sl = hh_data.parse_split(split)
        taken = hh_data.apply_slice(len(lines), sl)
        prompts = [{"turns": [{"role": "user", "content": lines[i]}], "text": lines[i]} for i in taken]
        origins = [(str(path.resolve()), i) for i in taken]
        where = str(path)
    else:
        rows, where, row_origins = hh_data.load_rows(source, split, data_dir)
        kept = [(p, o) for p, o in zip(map(row_to_prompt, rows), row_origins) if p is not None]
        prompts, origins = [p for p, _ in kept], [o for _, o in kept]
        if rows and not prompts:
            raise cmdline.UsageError(
                f"{where}: no prompts found; expected chosen/rejected or one of the columns {PROMPT_COLUMNS}"
            )
    if not prompts:
        raise cmdline.UsageError(f"{where}: the prompt set is empty")
    return prompts, origins


def eval_prompt_source(
    query_dataset: str,
    data_dir: str | None,
    eval_dataset: str | None,
    eval_split: str | None,
    eval_data_dir: str | None,
) -> tuple[str, str, str | None]:
    """Where ppo.py's held-out prompts come from, as (dataset, split, data_dir): --eval_dataset's 'train'
    split, else the 'test' split of --query_dataset; --eval_data_dir's subsets, else --data_dir's when
    the prompts come from --query_dataset."""
    return (
        eval_dataset or query_dataset,
        eval_split or ("train" if eval_dataset else "test"),
        eval_data_dir if eval_data_dir or eval_dataset else data_dir,
    )


class PromptEncoder:
    """Renders a conversation for the policy (its chat template, else hh-rlhf text) and tokenizes it,
    dropping whole turns from the left, then tokens, to fit `max_length`. Not the tokenizer's
    `truncation_side="left"`: that would cut the template's own opening tokens (a chat model's
    system turn and role markers) along with the oldest words."""

    def __init__(self, tokenizer, max_length: int):
        self.tok, self.max_length = tokenizer, max_length
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self.n_cut = 0

    def render(self, turns) -> str:
        if self.chat:
            return self.tok.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
        return hh_data.render_hh(turns, add_generation_prompt=True)

    def ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=not self.chat)["input_ids"]

    def __call__(self, prompt: dict) -> list[int]:
        turns = list(prompt["turns"])
        ids = self.ids(self.render(turns))
        if len(ids) <= self.max_length:
            return ids
        self.n_cut += 1
        while len(turns) > 1 and len(ids) > self.max_length:
            turns = turns[1:]
            ids = self.ids(self.render(turns))
        if len(ids) > self.max_length:  # one turn is still too long: keep its end
            content = self.tok(turns[-1]["content"], add_special_tokens=False)["input_ids"]
            overhead = len(ids) - len(content)
            keep = self.max_length - overhead
            while keep > 0:
                turn = {**turns[-1], "content": self.tok.decode(content[-keep:])}
                ids = self.ids(self.render([turn]))
                if len(ids) <= self.max_length:
                    break
                keep -= max(1, len(ids) - self.max_length)
            if keep <= 0:
                raise cmdline.UsageError(
                    f"--max_prompt_length={self.max_length} is shorter than the policy's prompt "
                    f"template itself ({overhead} tokens)"
                )
        prompt["text"] = None  # the text no longer matches what the policy saw
        prompt["turns"] = turns if len(ids) <= self.max_length else prompt["turns"]
        return ids


class PromptStream:
    """Prompt order: one seeded permutation per pass over the data, the same on every rank; each
    rank takes its slice of the global batch. (pass, position) is all a checkpoint needs."""

    def __init__(self, n: int, global_batch: int, rank: int, world: int, seed: int):
        self.n, self.global_batch, self.rank, self.world, self.seed = n, global_batch, rank, world, seed
        self.epoch, self.pos = 0, 0

    def _perm(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def next_batch(self) -> list[int]:
        out = []
        while len(out) < self.global_batch:
            if self.pos >= self.n:
                self.epoch, self.pos = self.epoch + 1, 0
            perm = self._perm(self.epoch)
            take = min(self.global_batch - len(out), self.n - self.pos)
            out += perm[self.pos : self.pos + take]
            self.pos += take
        per_rank = self.global_batch // self.world
        return out[self.rank * per_rank : (self.rank + 1) * per_rank]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]


def stop_token_ids(tokenizer, extra: str | None) -> set[int]:
    """EOS, and a chat model's end-of-turn token, end a response."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        tid = tokenizer.convert_tokens_to_ids(token) if token in tokenizer.get_vocab() else None
        if tid is not None:
            ids.add(tid)
    if extra:
        extra_ids = tokenizer(extra, add_special_tokens=False)["input_ids"]
        if len(extra_ids) != 1:
            raise cmdline.UsageError(
                f"--stop_token={extra!r} is {len(extra_ids)} tokens for this tokenizer; it must be one"
            )
        ids.add(extra_ids[0])
    if not ids:
        raise cmdline.UsageError("the policy tokenizer has no EOS token; set --stop_token")
    return ids
