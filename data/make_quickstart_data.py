"""Write the quickstart's preference data: small, written by this project, in hh-rlhf text form.

    python data/make_quickstart_data.py    # rewrites data/quickstart/*.jsonl, byte-identical every time

Standard library only, no downloads; nothing is copied from hh-rlhf or any other dataset. The
hand-written tables (topics, questions, answers, failure phrases) are quickstart_tables.json beside it.

Each row of train.jsonl / test.jsonl is {"chosen": ..., "rejected": ...}, two dialogues in hh-rlhf text
form ("\\n\\nHuman: <question>\\n\\nAssistant: <reply>"). A quarter of them are multi-turn: an earlier,
polite exchange on the same topic comes first. Chosen and rejected share the whole conversation and
differ only in the final assistant reply.

The preference rule: the chosen reply is helpful, friendly and concise -- it answers the user's actual
question with concrete advice (one tip or two) in one to three short sentences and ends cleanly. The
rejected reply fails in one of five ways, drawn evenly (exactly a fifth of each split):
    dismissal  a curt, unhelpful or rude brush-off ("Figure it out yourself.")
    refusal    an unnecessary refusal ("I'm sorry, but I can't help with that.")
    ramble     off-topic: trivia and small talk that ignore the question, or (half the time) confident
               advice on an unrelated subject -- a real answer to some other question
    loop       a reply that repeats itself or loops on a phrase
    vague      a vague non-answer ("It depends. There are many factors.")
Rejected replies range from a few words to long rambles, so "the shorter (or longer) reply wins" is
no shortcut (the baselines are printed at the end and recorded in quickstart/README.md).

Files: train.jsonl (1,600 pairs), test.jsonl (400 pairs; its conversations -- the shared prompts -- do
not occur in train.jsonl at all), prompts.jsonl (64 {"prompt": ...} single-turn questions on topics
that are in neither file, for evaluating PPO).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent / "quickstart"
SEED = 1124
N_TRAIN, N_TEST, N_PROMPTS = 1600, 400, 64
MULTI_TURN_SHARE = 0.25
MAX_WORDS = 200

# The hand-written tables: every topic, question, answer and failure phrase the pairs are drawn from.
TABLES = json.loads((Path(__file__).resolve().parent / "quickstart_tables.json").read_text(encoding="utf-8"))
# [(topic as a noun phrase, [(what the user wants to do, [three short, concrete, correct answers]), ...])]
TOPICS: list[tuple[str, list[tuple[str, list[str]]]]] = [
    (topic, list(tasks.items())) for topic, tasks in TABLES["topics"].items()
]
# Topics grouped by area; an off-topic rejected reply answers a question from another area.
CATEGORIES: dict[str, list[str]] = TABLES["categories"]
CATEGORY_OF = {topic: c for c, topics in CATEGORIES.items() for topic in topics}
# Single-turn PPO evaluation prompts: tasks from topics that appear in neither train nor test.
HELD_OUT_ASKS: list[str] = TABLES["held_out_asks"]
QUESTIONS: list[str] = TABLES["questions"]
FOLLOW_UPS: list[str] = TABLES["follow_ups"]
# Friendly framing, shared between chosen and some rejected replies so that it is no cue on its own.
OPENERS: list[str] = TABLES["openers"]
CLOSERS: list[str] = TABLES["closers"]
# The five failure kinds of a rejected reply and their phrases ({topic}, {Topic}, {ask2} are filled in).
KINDS = ["dismissal", "refusal", "ramble", "loop", "vague"]
DISMISSALS: list[str] = TABLES["dismissals"]
REFUSALS: list[str] = TABLES["refusals"]
REFUSAL_TAILS: list[str] = TABLES["refusal_tails"]
RAMBLES: list[str] = TABLES["rambles"]
RAMBLE_INTROS: list[str] = TABLES["ramble_intros"]
VAGUE: list[str] = TABLES["vague"]
LOOP_PHRASES: list[str] = TABLES["loop_phrases"]
LOOP_RESTATES: list[str] = TABLES["loop_restates"]

SECOND_PERSON = {"my": "your", "I": "you", "I'm": "you're", "myself": "yourself"}


def second_person(text: str) -> str:
    """'keep my passwords safe' -> 'keep your passwords safe' (for rejected replies that echo the ask)."""
    return " ".join(SECOND_PERSON.get(w, w) for w in text.split())


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def fill(template: str, topic: str, ask: str = "") -> str:
    return template.format(topic=topic, Topic=cap(topic), ask=ask, ask2=second_person(ask))


def picks(rng: random.Random, options: list[str], k: int) -> list[str]:
    return rng.sample(options, k)


def hh(turns: list[tuple[str, str]]) -> str:
    return "".join(f"\n\n{role}: {text}" for role, text in turns)


def sentences(text: str) -> int:
    return sum(text.count(p) for p in ".!?")


def good_reply(rng: random.Random, answers: list[str]) -> str:
    reply = rng.choice(answers)
    others = [a for a in answers if a != reply and sentences(reply) + sentences(a) <= 3]
    if others and rng.random() < 0.35:  # a fuller answer: two tips, still at most three sentences
        other = rng.choice(others)
        reply += " " + (other if rng.random() < 0.5 else "Also, " + other[:1].lower() + other[1:])
    if rng.random() < 0.4:
        reply = rng.choice(OPENERS) + reply
    if rng.random() < 0.25:
        reply += " " + rng.choice(CLOSERS)
    return reply


def loop_reply(rng: random.Random, topic: str, ask: str, answers: list[str]) -> str:
    style = rng.randrange(4)
    if style == 0:  # one clause of a real answer, looped
        clause = rng.choice(answers).split(".")[0].split(",")[0].split(":")[0].rstrip(".!")
        n = rng.randint(4, 6)
        sep = rng.choice([", ", " and ", ". "])
        if sep == ". ":
            return ". ".join([clause] * n) + "."
        return sep.join([clause] + [clause[:1].lower() + clause[1:]] * (n - 1)) + rng.choice([".", "..."])
    if style == 1:  # restating the question, over and over
        sentence = fill(rng.choice(LOOP_RESTATES), topic, ask)
        return " ".join([cap(sentence)] * rng.randint(3, 4))
    if style == 2:  # a filler phrase, looped
        phrase = fill(rng.choice(LOOP_PHRASES), topic, ask)
        sep = rng.choice([", ", " ", "... "])
        return cap(sep.join([phrase] * rng.randint(5, 9))) + "."
    # a whole first sentence of a real answer, repeated
    sentence = rng.choice(answers).split(". ")[0].rstrip(".") + "."
    return " ".join([sentence] * rng.randint(3, 4))


def bad_reply(rng: random.Random, kind: str, topic: str, ask: str, answers: list[str]) -> str:
    if kind == "dismissal":
        return " ".join(fill(s, topic) for s in picks(rng, DISMISSALS, rng.choice([1, 2, 2, 3])))
    if kind == "refusal":
        parts = [fill(rng.choice(REFUSALS), topic)]
        parts += picks(rng, REFUSAL_TAILS, rng.choice([0, 1, 1, 2]))
        return " ".join(parts)
    if kind == "ramble" and rng.random() < 0.5:  # confident advice on an unrelated subject
        others = [i for i, (t, _) in enumerate(TOPICS) if CATEGORY_OF[t] != CATEGORY_OF[topic]]
        _, other_tasks = TOPICS[rng.choice(others)]
        return good_reply(rng, rng.choice(other_tasks)[1])
    if kind == "ramble":  # small talk and trivia
        intro = fill(rng.choice(RAMBLE_INTROS), topic)
        body = picks(rng, RAMBLES, rng.choice([2, 2, 3]))
        if intro.endswith(", ") and not body[0].startswith("I "):
            body[0] = body[0][:1].lower() + body[0][1:]
        return intro + " ".join(body)
    if kind == "loop":
        reply = loop_reply(rng, topic, ask, answers)
        return (rng.choice(OPENERS[:5]) + reply) if rng.random() < 0.2 else reply
    if kind == "vague":
        reply = " ".join(cap(fill(s, topic)) for s in picks(rng, VAGUE, rng.choice([1, 2, 2, 3, 3, 4])))
        if rng.random() < 0.3:
            reply = rng.choice(OPENERS[:6]) + reply
        if rng.random() < 0.2:
            reply += " " + rng.choice(CLOSERS)
        return reply
    raise ValueError(kind)


def make_pair(rng: random.Random, topic_index: int, kind: str, multi_turn: bool) -> tuple[str, dict]:
    """(the shared conversation, {"chosen", "rejected"})."""
    topic, tasks = TOPICS[topic_index]
    order = rng.sample(range(len(tasks)), 2)
    ask, answers = tasks[order[-1]]
    turns: list[tuple[str, str]] = []
    if multi_turn:  # an earlier, polite exchange on the same topic
        first_ask, first_answers = tasks[order[0]]
        turns += [
            ("Human", rng.choice(QUESTIONS).format(ask=first_ask)),
            ("Assistant", good_reply(rng, first_answers)),
            ("Human", rng.choice(FOLLOW_UPS).format(ask=ask)),
        ]
    else:
        turns.append(("Human", rng.choice(QUESTIONS).format(ask=ask)))
    prompt = hh(turns)
    chosen = good_reply(rng, answers)
    rejected = bad_reply(rng, kind, topic, ask, answers)
    assert chosen != rejected
    row = {"chosen": prompt + hh([("Assistant", chosen)]), "rejected": prompt + hh([("Assistant", rejected)])}
    return prompt, row


def make_split(rng: random.Random, n: int, banned_prompts: set[str]) -> tuple[list[dict], list[str]]:
    """n pairs, failure kinds exactly even, a MULTI_TURN_SHARE of them multi-turn, topics balanced;
    no row repeats a dialogue, and no row's conversation is in banned_prompts."""
    assert n % len(KINDS) == 0
    kinds = KINDS * (n // len(KINDS))
    multi = [i < round(n * MULTI_TURN_SHARE) for i in range(n)]
    topics = [i % len(TOPICS) for i in range(n)]
    for seq in (kinds, multi, topics):
        rng.shuffle(seq)
    rows, prompts, seen = [], [], set()
    for kind, is_multi, topic_index in zip(kinds, multi, topics):
        for _ in range(1000):
            prompt, row = make_pair(rng, topic_index, kind, is_multi)
            if prompt not in banned_prompts and row["chosen"] not in seen and row["rejected"] not in seen:
                break
        else:
            raise RuntimeError("could not draw a fresh pair; add more variety")
        seen.update(row.values())
        rows.append(row)
        prompts.append(prompt)
    return rows, prompts


def words(text: str) -> int:
    return len(text.split())


def final_reply(dialogue: str) -> str:
    return dialogue.rsplit("\n\nAssistant: ", 1)[1]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def check(train: list[dict], test: list[dict], train_prompts: list[str], test_prompts: list[str], prompts):
    assert len(train) == N_TRAIN and len(test) == N_TEST and len(prompts) == N_PROMPTS
    for rows, conversations in ((train, train_prompts), (test, test_prompts)):
        for row, conversation in zip(rows, conversations):
            for text in row.values():
                assert text.startswith(conversation + "\n\nAssistant: "), text
                assert text.count("\n\nAssistant: ") == text.count("\n\nHuman: "), text
                assert words(text) < MAX_WORDS, (words(text), text)
            assert row["chosen"] != row["rejected"]
    # No dialogue text shared between train and test -- not even a conversation.
    train_texts = {t for r in train for t in r.values()}
    assert not any(t in train_texts for r in test for t in r.values()), "a test dialogue is in train"
    assert not set(train_prompts) & set(test_prompts), "a test conversation is in train"
    # The PPO prompts are held out from both.
    all_text = "\n".join(t for r in train + test for t in r.values()).lower()
    for p in prompts:
        assert p["prompt"].lower() not in all_text, p
    assert len({p["prompt"] for p in prompts}) == N_PROMPTS
    held = set(HELD_OUT_ASKS)
    assert not held & {ask for _, tasks in TOPICS for ask, _ in tasks}


def main() -> None:
    assert len(HELD_OUT_ASKS) == N_PROMPTS, len(HELD_OUT_ASKS)
    listed = [t for topics in CATEGORIES.values() for t in topics]
    assert sorted(listed) == sorted(t for t, _ in TOPICS), "every topic needs exactly one category"
    rng = random.Random(SEED)
    train, train_prompts = make_split(rng, N_TRAIN, banned_prompts=set())
    test, test_prompts = make_split(rng, N_TEST, banned_prompts=set(train_prompts))
    prompts = [
        {"prompt": QUESTIONS[i % len(QUESTIONS)].format(ask=ask)} for i, ask in enumerate(HELD_OUT_ASKS)
    ]
    check(train, test, train_prompts, test_prompts, prompts)

    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test), ("prompts", prompts)):
        write_jsonl(OUT / f"{name}.jsonl", rows)
        digest = hashlib.sha256((OUT / f"{name}.jsonl").read_bytes()).hexdigest()[:16]
        print(f"{name}.jsonl: {len(rows)} rows, sha256 {digest}...")

    # Length alone must not be the rule: accuracy of "the longer (shorter) final reply wins".
    for name, rows in (("train", train), ("test", test)):
        lengths = [(words(final_reply(r["chosen"])), words(final_reply(r["rejected"]))) for r in rows]
        longer = sum(c > r for c, r in lengths) / len(rows)
        shorter = sum(c < r for c, r in lengths) / len(rows)
        print(f"{name}: 'longer reply wins' {longer:.3f}, 'shorter reply wins' {shorter:.3f} (in words)")


if __name__ == "__main__":
    main()
