"""What a continuous thought gets as input when a Coconut stage starts from a CoT checkpoint.

Two measures on a CoT checkpoint trained with `copy_path` (benchmarks/RESULTS.md, "One vector
per sentence"):

- `cosine`: for each question, the cosine between the vector of the chain's first step as
  written (the patch after the question) and the vector of the same sentence in the question,
  and the best cosine with any other question patch. With context in the patch vectors the
  quoted fact is often not the closest.
- `stages`: accuracy at Coconut stages before any Coconut training, the model given
  `copy_into_thoughts` with `thought_read_init=identity`. `--thought` picks the thought's input:
  `head+read` (what training uses: the thought head's output plus the picked patch), `read`
  (the picked patch only), `oracle` (stage 1 only: the step's own vector as written, one
  question at a time).

- `forced`: teacher-forced, the share of questions whose first written step after the
  thoughts (at stage 0: the chain's second step) is predicted right byte for byte, from any
  checkpoint (CoT or Coconut). `--swap` feeds every patch that repeats an earlier one that
  one's vector (`model.quote_swap_prob=1`): at stage 0, does the latent stack continue from
  a step given in the question's form?

    python benchmarks/thought_input_probe.py cosine RUN/cot/final.pt VALID --n 20
    python benchmarks/thought_input_probe.py forced RUN/coconut/stage1.pt VALID --stages 1
    python benchmarks/thought_input_probe.py stages RUN/cot/final.pt VALID --n 100 \\
        --stages 0,1,2 --thought read --keep-last-steps 2
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from coconutblt.checkpoint import model_from_checkpoint, read_checkpoint
from coconutblt.data.reasoning import load_examples
from coconutblt.data.stages import format_example
from coconutblt.inference.evaluate import evaluate_examples
from coconutblt.model import HybridTransformer, ModelConfig
from coconutblt.train.config import run_config_from_dict, stage_config
from coconutblt.vocab import NUM_BYTES


def coconut_model(cot_path: str, keep_last_steps: int):
    """The CoT checkpoint as a Coconut model whose thoughts read the picked patch."""
    cot = read_checkpoint(cot_path)
    fields = dict(cot["model_config"])
    fields.update(copy_into_thoughts=True, thought_read_init="identity", c_thought=1)
    model = HybridTransformer(ModelConfig.from_dict(fields, source=f"{cot_path} (model_config)"))
    weights, _ = model.with_new_parts(cot["model"])
    model.load_state_dict(weights)
    run = run_config_from_dict(cot["run_config"], source=f"{cot_path} (run_config)")
    c = run.curriculum
    c.mode, c.c_thought, c.max_latent_stage, c.keep_last_steps = "coconut", 1, 6, keep_last_steps
    return model.eval(), stage_config(run)


def written_patches(model, example, stage_cfg):
    """-> (texts, vectors (P, D), index of the chain's first step) with the whole chain
    written: the first step is the patch holding the first byte after the prompt."""
    staged = format_example(example, 0, stage_cfg)
    ids = staged.input_ids
    x = torch.tensor([ids])
    with torch.no_grad():
        out = model(x)
        h = model.encoder.byte_states(x, torch.arange(x.shape[1])[None])
        vectors = model.encoder.pool(h, out.layout, x)[0]
    starts = out.layout.starts[0].tolist()
    lengths = out.layout.lengths[0].tolist()
    texts = [
        bytes(t for t in ids[s : s + n] if t < NUM_BYTES).decode().strip()
        for s, n in zip(starts, lengths, strict=True)
    ]
    step = int(out.layout.patch_id[0, len(staged.prompt_ids)])
    return texts, vectors, step


def cosine(args) -> None:
    model, stage_cfg = coconut_model(args.ckpt, args.keep_last_steps)
    closest = 0
    for ex in load_examples(args.data)[: args.n]:
        texts, vectors, step = written_patches(model, ex, stage_cfg)
        same = [j for j in range(step) if texts[j] == texts[step]]
        if not same:
            continue
        cos = torch.nn.functional.cosine_similarity(vectors[step][None], vectors[:step], dim=-1)
        other = max(cos[j].item() for j in range(step) if j != same[0])
        closest += cos[same[0]].item() >= other
        print(f"{texts[step]!r:40} same {cos[same[0]].item():6.3f}  best other {other:6.3f}")
    print(f"the quoted fact is the closest question patch in {closest} of {args.n}")


def stages(args) -> None:
    model, stage_cfg = coconut_model(args.ckpt, args.keep_last_steps)
    examples = load_examples(args.data)[: args.n]
    own = model.thought_input
    if args.thought == "read":
        model.thought_input = lambda state, read=None: own(state) if read is None else read
    torch.set_num_threads(args.threads)
    for stage in (int(s) for s in args.stages.split(",")):
        if args.thought == "oracle":
            if stage != 1:
                raise SystemExit("--thought oracle: stage 1 only")
            right = 0
            for ex in examples:
                _, vectors, index = written_patches(model, ex, stage_cfg)
                step = vectors[index]
                model.thought_input = lambda state, read=None, v=step: v.expand_as(state)
                right += evaluate_examples(model, [ex], stage_cfg, 1, 1).accuracy
            accuracy = right / len(examples)
        else:
            accuracy = evaluate_examples(model, examples, stage_cfg, stage, 50).accuracy
        print(f"thought {args.thought} stage {stage}: {100 * accuracy:.1f}% of {len(examples)}")


def forced(args) -> None:
    ckpt = read_checkpoint(args.ckpt)
    model = model_from_checkpoint(ckpt, args.ckpt)
    if args.swap:  # read at every forward, not at construction: the weights stay as they are
        model.config = replace(model.config, quote_swap_prob=1.0)
    run = run_config_from_dict(ckpt["run_config"], source=f"{args.ckpt} (run_config)")
    run.curriculum.mode = "coconut"
    stage_cfg = stage_config(run)
    torch.set_num_threads(args.threads)
    examples = load_examples(args.data)[: args.n]
    for stage in (int(s) for s in args.stages.split(",")):
        right = 0
        for ex in examples:
            staged = format_example(ex, stage, stage_cfg)
            ids = staged.input_ids
            with torch.no_grad():
                predicted = model(torch.tensor([ids])).logits[0].argmax(-1)  # (T,)
            good = predicted[:-1] == torch.tensor(ids[1:])  # (T - 1,) position t predicts t+1
            start = len(staged.prompt_ids)  # the first byte after the question and thoughts
            if stage == 0:  # the chain's first step is written: check the second
                start = ids.index(10, start) + 1
            end = ids.index(10, start)  # the step's newline
            right += bool(good[start - 1 : end].all())
        print(
            f"forced{' --swap' if args.swap else ''} stage {stage}: first written step right "
            f"in {right} of {len(examples)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measure", choices=["cosine", "stages", "forced"])
    parser.add_argument("ckpt", help="a CoT checkpoint (RUN/cot/final.pt)")
    parser.add_argument("data", help="validation file")
    parser.add_argument("--n", type=int, default=100, help="first N questions")
    parser.add_argument("--stages", default="1")
    parser.add_argument("--thought", choices=["head+read", "read", "oracle"], default="head+read")
    parser.add_argument("--keep-last-steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--swap", action="store_true", help="forced: quote_swap_prob=1")
    args = parser.parse_args()
    {"cosine": cosine, "stages": stages, "forced": forced}[args.measure](args)


if __name__ == "__main__":
    main()
