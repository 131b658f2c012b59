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


def parse_prompt_shares(spec: str) -> dict[str, float]:
    """--prompt_shares 'harmless-base=0.5,helpful-online=0.25' -> {subset folder: share}."""
    shares = {}
    for part in spec.split(","):
        name, sep, value = (x.strip() for x in part.partition("="))
        try:
            share = float(value) if sep else None
        except ValueError:
            share = None
        if not name or share is None or not 0 < share <= 1:
            raise cmdline.UsageError(
                f"--prompt_shares={spec!r}: each entry is SUBSET=SHARE with 0 < SHARE <= 1 (got {part!r})"
            )
        if name in shares:
            raise cmdline.UsageError(f"--prompt_shares={spec!r} names {name} twice")
        shares[name] = share
    if sum(shares.values()) > 1 + 1e-9:
        raise cmdline.UsageError(f"--prompt_shares={spec!r}: the shares sum to more than 1")
    return shares


def prompt_share_groups(
    subsets: list[str], shares: dict[str, float], per_update: int
) -> tuple[list[list[int]], list[int], list[str]]:
    """For --prompt_shares: the training prompts' indices in each named subset folder and in the rest
    (`subsets`: each prompt's folder), how many of each every update takes (share x prompts per update,
    rounded half up; the rest gets what is left) and the groups' names."""
    by_subset = hh_data.indices_by_label(subsets)
    present = list(by_subset)
    missing = [name for name in shares if name not in present]
    if missing:
        raise cmdline.UsageError(
            f"--prompt_shares names {', '.join(missing)}, but the training prompts come from "
            f"{', '.join(present)}"
        )
    names = list(shares)
    groups = [by_subset[name] for name in names]
    counts = [int(shares[name] * per_update + 0.5) for name in names]
    for name, count in zip(names, counts):
        if count == 0:
            raise cmdline.UsageError(
                f"--prompt_shares: {name}={shares[name]} of {per_update} prompts per update rounds to none"
            )
    left = per_update - sum(counts)
    others = [s for s in present if s not in shares]
    if left < 0:
        raise cmdline.UsageError(
            f"--prompt_shares: the shares, rounded to whole prompts, take {sum(counts)} of {per_update} per update"
        )
    if others and left == 0:
        raise cmdline.UsageError(
            f"--prompt_shares leaves no prompt per update to {', '.join(others)}: lower a share or drop "
            "them from --data_dir"
        )
    if not others and left > 0:
        raise cmdline.UsageError(
            f"--prompt_shares leaves {left} of {per_update} prompts per update to no subset: the named "
            "subsets are all the training prompts, so their shares must sum to 1"
        )
    if others:
        groups.append([i for i, s in enumerate(subsets) if s not in shares])
        counts.append(left)
        names.append(", ".join(others))
    return groups, counts, names


class MixedPromptStream:
    """--prompt_shares: each update takes counts[j] prompts from group j (indices into the training
    prompts), each group in its own seeded order, pass after pass (a PromptStream); the update's prompts
    are then shuffled with a seeded permutation, so processes and minibatches mix the groups, and each
    rank takes its slice. The streams' positions and the update count are all a checkpoint needs."""

    def __init__(self, groups: list[list[int]], counts: list[int], rank: int, world: int, seed: int):
        self.groups, self.rank, self.world, self.seed = groups, rank, world, seed
        self.streams = [
            PromptStream(len(g), c, 0, 1, seed + 7919 * (j + 1))
            for j, (g, c) in enumerate(zip(groups, counts))
        ]
        self.global_batch, self.batches = sum(counts), 0

    def next_batch(self) -> list[int]:
        picks = [g[i] for g, stream in zip(self.groups, self.streams) for i in stream.next_batch()]
        order = torch.randperm(len(picks), generator=torch.Generator().manual_seed(self.seed + self.batches))
        self.batches += 1
        per_rank = self.global_batch // self.world
        return [picks[i] for i in order.tolist()][self.rank * per_rank : (self.rank + 1) * per_rank]

    def state_dict(self) -> dict:
        return {"streams": [s.state_dict() for s in self.streams], "batches": self.batches}

    def load_state_dict(self, state: dict) -> None:
        for stream, saved in zip(self.streams, state["streams"]):
            stream.load_state_dict(saved)
        self.batches = state["batches"]


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
