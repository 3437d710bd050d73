"""Coconut's stage curriculum: which steps become continuous thoughts, and the token layout.

The rules follow the official Coconut code (facebookresearch/coconut, dataset.py and run.py,
MIT) so that results are comparable:

* Stage k replaces the first k steps with k * c_thought thoughts. A stage above
  `max_latent_stage` removes all steps and uses `max_latent_stage * c_thought` thoughts
  (`min(len(steps), max_latent_stage) * c_thought` unless `pad_latent_to_max`). A stage at
  most `max_latent_stage` but above the number of steps still uses k * c_thought (the
  official training data does this; its evaluation prompt does not, see
  `stage_counts(for_eval=True)`); `thoughts_beyond_steps=False` trains with the evaluation's
  count instead (not in the official code).
* With probability `uniform_prob` an example trains a uniformly random stage
  0..len(steps) instead (the analysis runs of the paper).
* `keep_last_steps` (not in the official code; 0 there) keeps an example's last steps written
  at every stage: the curriculum counts only the steps before them, so a stage past those
  replaces all of them and no more. For a last step that makes a decision easy in bytes
  (ProsQA's restated query, `data.synth.prosqa(restate=True)`).
* Layout: ``BOS question\\n <|start-latent|> thoughts <|end-latent|> step\\n ... ### answer
  EOS``. The loss ignores everything up to the end marker.

Modes (ablations of the paper):

=================  ==========================================  =========
mode               steps / thoughts                            markers
=================  ==========================================  =========
``coconut``        curriculum, thoughts fed back as states     yes
``pause``          as coconut, thoughts are PAUSE_ID tokens    yes
``no_curriculum``  always the last stage (all steps removed)   yes
``no_thoughts``    curriculum removes steps, 0 thoughts        no
``cot``            all steps, no thoughts                      no
``no_cot``         no steps, no thoughts                       no
=================  ==========================================  =========

Markers follow the official run.py, which sets ``no_special_marker`` for cot, no_cot and
no_thoughts; `StageConfig.markers` overrides that.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from coconutblt.data.chains import CHAINS, written_chain
from coconutblt.data.reasoning import Example
from coconutblt.errors import UserError
from coconutblt.vocab import (
    BOS_ID,
    END_LATENT_ID,
    EOS_ID,
    LATENT_ID,
    PAD_ID,
    PAUSE_ID,
    SPECIAL_NAMES,
    START_LATENT_ID,
    encode,
)

MODES = ("coconut", "cot", "no_cot", "no_thoughts", "pause", "no_curriculum")
IGNORE_INDEX = -100
_MARKED_MODES = frozenset({"coconut", "pause", "no_curriculum"})
_CURRICULUM_MODES = frozenset({"coconut", "pause", "no_thoughts"})


@dataclass(frozen=True)
class StageConfig:
    """How examples are laid out at a stage; field names are the official config keys."""

    mode: str = "coconut"
    c_thought: int = 1
    max_latent_stage: int = 3
    pad_latent_to_max: bool = False
    uniform_prob: float = 0.0
    markers: bool | None = None  # None: the mode's default (table in the module docstring)
    keep_last_steps: int = 0  # the last steps of every example stay written at every stage
    # official training (True): a stage above an example's step count still gives it a thought
    # per stage, thoughts with no step behind them; False gives one per step, as evaluation does
    thoughts_beyond_steps: bool = True
    # how the steps are written: as given, or rewritten from them (`data.chains`)
    chain: str = "given"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"unknown mode {self.mode!r}; use one of {', '.join(MODES)}")
        if self.chain not in CHAINS:
            raise UserError(f"curriculum.chain={self.chain!r}: use one of {', '.join(CHAINS)}")
        if self.c_thought < 0 or self.max_latent_stage < 0 or self.keep_last_steps < 0:
            raise UserError(
                "c_thought, max_latent_stage and keep_last_steps must be >= 0; fix the config"
            )
        if not 0.0 <= self.uniform_prob <= 1.0:
            raise UserError(f"uniform_prob={self.uniform_prob} must be in [0, 1]; fix the config")

    @property
    def uses_markers(self) -> bool:
        """Whether `<|start-latent|>`/`<|end-latent|>` surround the (possibly 0) thoughts."""
        return self.mode in _MARKED_MODES if self.markers is None else self.markers

    @property
    def thought_id(self) -> int:
        """PAUSE_ID for the pause ablation (ordinary embeddings), else LATENT_ID."""
        return PAUSE_ID if self.mode == "pause" else LATENT_ID


def scheduled_stage(epoch: int, epochs_per_stage: int, cfg: StageConfig) -> int:
    """The stage trained at `epoch`: 0 for cot/no_cot, past the last for no_curriculum."""
    if cfg.mode in ("cot", "no_cot"):
        return 0
    if cfg.mode == "no_curriculum":
        return cfg.max_latent_stage + 1
    return epoch // max(1, epochs_per_stage)


def stage_counts(
    example: Example,
    stage: int,
    cfg: StageConfig,
    rng: random.Random | None = None,
    *,
    for_eval: bool = False,
) -> tuple[int, int]:
    """(steps removed, thought positions) for `example` at `stage`.

    The thought count already includes `c_thought`. Training draws the uniform-mixing stage
    from `rng` (required when `uniform_prob` > 0). `for_eval` gives the official generation
    prompt instead: no mixing and `min(stage, max_latent_stage capped by len(steps) unless
    pad_latent_to_max)` thoughts.
    """
    if stage < 0:
        raise ValueError(f"stage={stage}: must be >= 0")
    if cfg.mode == "cot":
        return 0, 0
    if cfg.mode == "no_cot":
        return len(example.steps), 0
    n_steps = max(len(example.steps) - cfg.keep_last_steps, 0)  # the steps thoughts may replace
    if cfg.mode == "no_curriculum":
        stage = cfg.max_latent_stage + 1
    elif not for_eval and cfg.uniform_prob > 0:
        if rng is None:
            raise ValueError("uniform_prob > 0 needs an rng (random.Random) to draw stages")
        if rng.random() < cfg.uniform_prob:
            stage = rng.randrange(n_steps + 1)
    per_step = 0 if cfg.mode == "no_thoughts" else cfg.c_thought
    cap = cfg.max_latent_stage if cfg.pad_latent_to_max else min(n_steps, cfg.max_latent_stage)
    skip = n_steps if stage > cfg.max_latent_stage else min(stage, n_steps)
    if for_eval:
        return skip, min(cap, stage) * per_step
    if stage > cfg.max_latent_stage:
        thoughts = cap
    else:
        thoughts = stage if cfg.thoughts_beyond_steps else min(stage, n_steps)
    return skip, thoughts * per_step


def _target_text(example: Example, n_skip_steps: int) -> str:
    return "".join(s + "\n" for s in example.steps[n_skip_steps:]) + "### " + example.answer


def format_text(
    example: Example,
    n_skip_steps: int,
    n_latents: int,
    markers: bool,
    latent_text: str = SPECIAL_NAMES[LATENT_ID],
    start_text: str = SPECIAL_NAMES[START_LATENT_ID],
    end_text: str = SPECIAL_NAMES[END_LATENT_ID],
) -> tuple[str, str]:
    """(prompt, target) as text, for tokenizers that know the markers as added tokens.

    No BOS/EOS: the caller's tokenizer adds its own; the target must be followed by EOS.
    """
    prompt = example.question + "\n"
    if markers:
        prompt += start_text + latent_text * n_latents + end_text
    elif n_latents:
        prompt += latent_text * n_latents
    return prompt, _target_text(example, n_skip_steps)


@dataclass(frozen=True)
class StagedExample:
    """One example laid out for training (`input_ids`, `labels`) and generation (`prompt_ids`).

    `labels[i]` is the id at position i, or -100 where no loss is taken (BOS, question,
    markers, thoughts); the model shifts internally.
    """

    prompt_ids: list[int]
    target_ids: list[int]
    input_ids: list[int]
    labels: list[int]
    n_latents: int
    n_skip_steps: int
    answer: str
    n_question: int = 0  # bytes of the question text (+ its newline) right after BOS
    n_answer: int = 0  # bytes of the answer after "### ", and the EOS, at the end of the target
    # per thought: the sentence the step it replaces ends with (its last thought of the step;
    # "" for the others), the target of its pointer with `model.copy_into_thoughts`
    thought_quotes: tuple[str, ...] = ()

    def question_labels(self) -> list[int]:
        """Labels for a language-model loss on the question's bytes only (-100 elsewhere).

        The paper masks the question because its pretrained model already reads; a byte model
        trained from scratch learns to read from this loss (`curriculum.question_loss_weight`).
        """
        q = self.input_ids[1 : 1 + self.n_question]
        return [IGNORE_INDEX] + q + [IGNORE_INDEX] * (len(self.input_ids) - 1 - len(q))

    def answer_labels(self) -> list[int]:
        """Labels for the answer's bytes and the EOS only (-100 elsewhere).

        The answer is a byte or two of a ~300-byte target, so in the mean next-byte loss it
        weighs almost nothing; `curriculum.answer_loss_weight` adds its own mean on top.
        """
        n = len(self.input_ids) - self.n_answer
        return [IGNORE_INDEX] * n + self.input_ids[n:]


def format_example(
    example: Example,
    stage: int,
    cfg: StageConfig,
    rng: random.Random | None = None,
    *,
    for_eval: bool = False,
) -> StagedExample:
    """Byte ids for `example` at `stage` (counts from `stage_counts`), its steps written as
    `cfg.chain` says."""
    example = written_chain(example, cfg.chain)
    skip, n_latents = stage_counts(example, stage, cfg, rng, for_eval=for_eval)
    question = encode(example.question + "\n")
    prompt = [BOS_ID] + question
    thoughts = [cfg.thought_id] * n_latents
    prompt += [START_LATENT_ID, *thoughts, END_LATENT_ID] if cfg.uses_markers else thoughts
    target = encode(_target_text(example, skip)) + [EOS_ID]
    per_step = max(1, cfg.c_thought)
    quotes = tuple(
        last_sentence(example.steps[i // per_step])
        if i % per_step == per_step - 1 and i // per_step < skip
        else ""
        for i in range(n_latents if cfg.thought_id == LATENT_ID else 0)
    )
    return StagedExample(
        prompt_ids=prompt,
        target_ids=target,
        input_ids=prompt + target,
        labels=[IGNORE_INDEX] * len(prompt) + target,
        n_latents=n_latents,
        n_skip_steps=skip,
        answer=example.answer,
        n_question=len(question),
        n_answer=len(encode(example.answer)) + 1,
        thought_quotes=quotes,
    )


def last_sentence(step: str) -> str:
    """The step's last sentence ("Alex is a tumpus. Tumpuses are gorpuses." -> "Tumpuses are
    gorpuses."): what a reasoning step quotes last from the question, when it quotes."""
    return step.strip().rsplit(". ", 1)[-1]


def collate(staged: list[StagedExample], pad_id: int = PAD_ID) -> dict[str, torch.Tensor]:
    """Right-padded LongTensors `input_ids`, `labels` (-100 at pads), `question_labels` and
    `answer_labels` (the question's and the answer's bytes, for the optional extra losses),
    `attention_mask` and `thought_quotes` (B, N, L): each thought's quote, PAD-padded."""
    if not staged:
        raise ValueError("collate needs at least one example")
    width = max(len(s.input_ids) for s in staged)
    input_ids = torch.full((len(staged), width), pad_id, dtype=torch.long)
    labels = torch.full((len(staged), width), IGNORE_INDEX, dtype=torch.long)
    question_labels = torch.full_like(labels, IGNORE_INDEX)
    answer_labels = torch.full_like(labels, IGNORE_INDEX)
    mask = torch.zeros((len(staged), width), dtype=torch.long)
    for row, s in enumerate(staged):
        n = len(s.input_ids)
        input_ids[row, :n] = torch.tensor(s.input_ids, dtype=torch.long)
        labels[row, :n] = torch.tensor(s.labels, dtype=torch.long)
        question_labels[row, :n] = torch.tensor(s.question_labels(), dtype=torch.long)
        answer_labels[row, :n] = torch.tensor(s.answer_labels(), dtype=torch.long)
        mask[row, :n] = 1
    quotes = [[encode(q) for q in s.thought_quotes] for s in staged]
    n_quotes = max(len(q) for q in quotes)
    quote_len = max([1, *(len(t) for q in quotes for t in q)])
    thought_quotes = torch.full((len(staged), n_quotes, quote_len), pad_id, dtype=torch.long)
    for row, q in enumerate(quotes):
        for i, t in enumerate(q):
            thought_quotes[row, i, : len(t)] = torch.tensor(t, dtype=torch.long)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "question_labels": question_labels,
        "answer_labels": answer_labels,
        "attention_mask": mask,
        "thought_quotes": thought_quotes,
    }


def extract_answer(generated_text: str) -> str:
    """The exact-match answer: text after the last ``###``, up to newline/EOS, stripped.

    Returns "" when there is no ``###`` (no answer given). A special token rendered as
    ``<|...|>`` (e.g. EOS from `decode_text`) ends the answer too.
    """
    at = generated_text.rfind("###")
    if at < 0:
        return ""
    rest = generated_text[at + 3 :]
    for stop in ("\n", "<|"):
        rest = rest.split(stop, 1)[0]
    return rest.strip()


def normalize_answer(answer: str | None) -> str:
    """The form answers are compared in: stripped, thousands separators dropped ("1,000" and
    "1000" are one number, as in GSM8K's references)."""
    return (answer or "").replace(",", "").strip()


def answer_matches(prediction: str | None, reference: str) -> bool:
    """Exact match after `normalize_answer`; no answer (``""``) is never right. The one rule
    every evaluator (native and Hugging Face) scores with."""
    pred = normalize_answer(prediction)
    return bool(pred) and pred == normalize_answer(reference)
