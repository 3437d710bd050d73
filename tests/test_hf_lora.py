"""LoRA (PEFT) on CoconutForCausalLM: thoughts run through the adapter, only the adapter and
the three token rows train, and an adapter checkpoint loads (and merges) to the same logits."""

from __future__ import annotations

import argparse
import copy
import json
import re

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("peft")

import torch  # noqa: E402

from coconutblt.commands.hf import add_hf_parser  # noqa: E402
from coconutblt.errors import UserError  # noqa: E402
from coconutblt.hf.coconut_lm import CoconutForCausalLM  # noqa: E402
from coconutblt.hf.lora import LoraSettings, attach_lora, merged  # noqa: E402
from coconutblt.hf.tiny import build_tiny_base, tiny_gpt2, tiny_llama, tiny_tokenizer  # noqa: E402
from coconutblt.hf.train import load_for_training, train_stage  # noqa: E402
from tests.test_hf_distributed import toy_rows  # noqa: E402

KINDS = ["gpt2", "llama"]  # tied head and Conv1D projections; untied head and nn.Linear


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="coconutblt")
    add_hf_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def lora_wrapper(kind: str, seed: int = 0):
    """A tiny wrapper with an adapter that already does something (B != 0, rows moved)."""
    tok = tiny_tokenizer()
    build = tiny_gpt2 if kind == "gpt2" else tiny_llama
    model = CoconutForCausalLM(build(len(tok), tok.eos_token_id), tok)
    attach_lora(model, LoraSettings(r=4), base_dir=".")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval(), tok


def thought_row(model, tok, n: int = 2):
    """One row: question, n thoughts, answer; labels on the answer (after the thoughts) only."""
    prompt = tok.encode("Natalia sold 48/2 clips.\n") + model.thought_suffix(n)
    target = tok.encode("### 72") + [tok.eos_token_id]
    ids = torch.tensor([prompt + target])
    labels = torch.tensor([[-100] * len(prompt) + target])
    return ids, labels


def reference(model, ids, labels, *, detach=False, thoughts_without_adapter=False):
    """The definition, slowly: rerun the whole (adapted) model once per thought; a thought is
    the last hidden state before it. `detach` cuts the gradient through the thoughts;
    `thoughts_without_adapter` computes them with the adapter off. Returns (logits, loss)."""
    base = model.base_model
    embeds = base.get_input_embeddings()(ids)  # (1, T, D)
    for p in (ids[0] == model.token_ids.latent).nonzero().flatten().tolist():
        if thoughts_without_adapter:
            with model.peft.disable_adapter():
                out = base(inputs_embeds=embeds[:, :p], use_cache=False, output_hidden_states=True)
        else:
            out = base(inputs_embeds=embeds[:, :p], use_cache=False, output_hidden_states=True)
        thought = out.hidden_states[-1][:, -1:]  # (1, 1, D)
        thought = thought.detach() if detach else thought
        embeds = torch.cat([embeds[:, :p], thought, embeds[:, p + 1 :]], dim=1)
    logits = base(inputs_embeds=embeds, use_cache=False).logits
    shifted = torch.nn.functional.pad(labels, (0, 1), value=-100)[:, 1:]
    loss = torch.nn.functional.cross_entropy(logits[0].float(), shifted[0], ignore_index=-100)
    return logits, loss


def adapter_grads(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if "lora_" in n}


@pytest.mark.parametrize("kind", KINDS)
def test_thoughts_run_through_the_adapter(kind):
    """The wrapper's thoughts are the adapted model's hidden states, and the adapter's
    gradients flow back through them: they equal the definition's, and differ from what a
    thought that skipped the adapter (or cut the gradient) gives."""
    model, tok = lora_wrapper(kind)
    ids, labels = thought_row(model, tok)
    out = model(ids, labels=labels)
    assert out.n_passes == 3
    ref_logits, ref_loss = reference(model, ids, labels)
    torch.testing.assert_close(out.logits, ref_logits, atol=1e-5, rtol=1e-5)
    skipped, _ = reference(model, ids, labels, thoughts_without_adapter=True)
    assert (out.logits - skipped).abs().max() > 1e-3  # the adapter changes the thoughts

    got = adapter_grads(model, out.loss)
    want = adapter_grads(model, reference(model, ids, labels)[1])
    cut = adapter_grads(model, reference(model, ids, labels, detach=True)[1])
    assert got.keys() == want.keys() and len(got) >= 4
    for name in got:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=1e-4)
    # the part of the gradient that reaches the adapter through the thought positions
    through = max(float((want[n] - cut[n]).abs().max()) for n in want)
    assert through > 1e-4, through


@pytest.fixture
def toy(tmp_path):
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in toy_rows(8)))
    return data


def tiny_base(tmp_path, toy, kind):
    base = tmp_path / f"base-{kind}"
    build_tiny_base(data=str(toy), out=str(base), arch=kind, width=32, print_fn=lambda *a: None)
    return base


@pytest.mark.parametrize("kind", KINDS)
def test_lora_training_changes_only_the_adapter_and_token_rows(tmp_path, toy, kind):
    base = tiny_base(tmp_path, toy, kind)
    out = tmp_path / "s1"
    result = train_stage(
        base_model=str(base),
        load=None,
        data=str(toy),
        stage=1,
        c_thought=1,
        out=str(out),
        epochs=2,
        lr=1e-2,
        batch_size=4,
        lora=LoraSettings(r=4),
        print_fn=lambda *a: None,
    )
    assert result["losses"][-1] < result["losses"][0]  # 4 steps of lr 1e-2 on 8 rows
    trained = result["model"]
    torch.manual_seed(0)  # train_stage's seed: the same adapter initialisation
    before = load_for_training(str(base), None, LoraSettings(r=4), bf16=False)
    old = dict(before.named_parameters())
    changed, trainable = set(), set()
    for name, p in trained.named_parameters():
        if not torch.equal(p, old[name]):
            changed.add(name)
        if p.requires_grad:
            trainable.add(name)
    assert changed == trainable, changed ^ trainable
    assert any("lora_B" in n for n in changed) and any("tokens_delta" in n for n in changed)
    assert all("lora_" in n or "trainable_tokens_delta" in n for n in trainable)
    # the rows train in the embedding and, untied (Llama), in the output head too
    n_row_sets = sum("tokens_delta" in n for n in trainable)
    assert n_row_sets == (1 if kind == "gpt2" else 2), trainable
    # the effective embedding: every row of the base vocabulary is the base model's
    rows = sorted(set(vars(trained.token_ids).values()))
    w_new = trained.base_model.get_input_embeddings().weight
    w_old = before.base_model.get_input_embeddings().weight
    keep = torch.ones(w_new.shape[0], dtype=torch.bool)
    keep[rows] = False
    assert torch.equal(w_new[keep], w_old[keep]) and not torch.equal(w_new[rows], w_old[rows])

    # the checkpoint: an adapter, no full weights, and only adapter tensors in it
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "coconut.json"} <= names
    assert "model.safetensors" not in names
    from safetensors.torch import load_file

    saved = load_file(out / "adapter_model.safetensors")
    assert all("lora_" in k or "trainable_tokens_delta" in k for k in saved)
    meta = json.loads((out / "coconut.json").read_text())
    assert meta["lora"]["r"] == 4 and meta["lora"]["base"] == str(base.resolve())


@pytest.mark.parametrize("kind", KINDS)
def test_adapter_checkpoint_loads_and_merges_to_the_same_logits(tmp_path, toy, kind):
    base = tiny_base(tmp_path, toy, kind)
    out, full = tmp_path / "s1", tmp_path / "s1-merged"
    argv = f"hf train --base-model {base} --data {toy} --stage 1 --c-thought 2 --epochs 1 "
    argv += f"--batch-size 4 --lr 1e-2 --lora-r 4 --lora-alpha 4 --out {out} --merge-lora {full}"
    assert run_cli(argv.split()) == 0
    loaded = CoconutForCausalLM.from_pretrained(out).eval()
    assert loaded.peft is not None and loaded.metadata["lora"]["alpha"] == 4
    ids, labels = thought_row(loaded, loaded.tokenizer)
    with torch.no_grad():
        want = loaded(ids, labels=labels).logits

        # save -> load gives the same logits to the bit
        loaded.save_pretrained(tmp_path / "again")
        again = CoconutForCausalLM.from_pretrained(tmp_path / "again").eval()
        torch.testing.assert_close(again(ids).logits, want, atol=0, rtol=0)

        # the merged model (in memory, and the --merge-lora folder) gives the same logits
        in_memory = merged(copy.deepcopy(loaded)).eval()
        assert in_memory.peft is None
        torch.testing.assert_close(in_memory(ids).logits, want, atol=2e-5, rtol=1e-5)
        folder = CoconutForCausalLM.from_pretrained(full).eval()
        assert folder.peft is None and (full / "model.safetensors").is_file()
        torch.testing.assert_close(folder(ids).logits, want, atol=2e-5, rtol=1e-5)
        assert folder.metadata["merged_lora"]["r"] == 4 and "lora" not in folder.metadata

    # hf merge-lora writes the same full model
    assert run_cli(f"hf merge-lora --ckpt {out} --out {tmp_path / 'm2'}".split()) == 0
    with torch.no_grad():
        m2 = CoconutForCausalLM.from_pretrained(tmp_path / "m2").eval()
        torch.testing.assert_close(m2(ids).logits, folder(ids).logits, atol=0, rtol=0)


def test_next_stage_continues_the_adapter_and_eval_loads_it(tmp_path, toy, capsys):
    base = tiny_base(tmp_path, toy, "llama")
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    common = f"--data {toy} --c-thought 1 --epochs 1 --batch-size 4 --lr 1e-2"
    argv = f"hf train --base-model {base} --stage 1 --lora-r 4 --out {s1} {common}"
    assert run_cli(argv.split()) == 0
    s1_adapter = CoconutForCausalLM.from_pretrained(s1)
    assert run_cli(f"hf train --load {s1} --stage 2 --out {s2} {common}".split()) == 0
    out = capsys.readouterr().out
    assert "LoRA r=4 alpha=8 on q_proj,v_proj" in out
    s2_adapter = CoconutForCausalLM.from_pretrained(s2)
    assert s2_adapter.metadata["lora"]["base"] == str(base.resolve())
    a = dict(s1_adapter.named_parameters())
    moved = [
        n for n, p in s2_adapter.named_parameters() if "lora_B" in n and not torch.equal(p, a[n])
    ]
    assert moved  # stage 2 trained stage 1's adapter further

    # hf eval loads base + adapter; a moved base is found through --base-model
    moved_base = tmp_path / "elsewhere"
    base.rename(moved_base)
    with pytest.raises(UserError, match=r"which does not exist here; pass --base-model"):
        run_cli(f"hf eval --ckpt {s2} --data {toy} --max-new-tokens 4".split())
    argv = f"hf eval --ckpt {s1} {s2} --data {toy} --max-new-tokens 4 --base-model {moved_base}"
    assert run_cli(argv.split()) == 0
    assert re.search(r"Stage 2 \(s2\):\s+Accuracy = .* thoughts", capsys.readouterr().out)


def test_lora_mistakes_are_one_line_errors(tmp_path, toy):
    base = tiny_base(tmp_path, toy, "llama")
    head = f"hf train --data {toy} --stage 1 --epochs 1 --batch-size 4 --out {tmp_path / 'o'}"
    cases = [
        (f"--base-model {base} --lora-r 0", "--lora-r must be positive"),
        (f"--base-model {base} --lora-r 4 --lora-dropout 1.5", "--lora-dropout must be in"),
        (f"--base-model {base} --lora-r 4 --lora-targets q_proj,wq", "--lora-targets wq: no such"),
        (f"--base-model {base} --merge-lora {tmp_path / 'm'}", "--merge-lora needs a LoRA run"),
        (f"--base-model {base} --report-to mlflow", "--report-to: unknown tracker 'mlflow'"),
    ]
    for extra, message in cases:
        with pytest.raises(UserError, match=re.escape(message)) as err:
            run_cli([*head.split(), *extra.split()])
        assert "\n" not in str(err.value)
    s1 = tmp_path / "s1"
    argv = f"hf train --base-model {base} --data {toy} --epochs 1 --lora-r 4 --out {s1}"
    assert run_cli(argv.split()) == 0
    with pytest.raises(UserError, match=r"holds a LoRA adapter with r=4, .*\(hf merge-lora\)"):
        run_cli([*head.split(), "--load", str(s1), "--lora-r", "8"])
    with pytest.raises(UserError, match=r"holds no LoRA adapter"):
        run_cli(f"hf merge-lora --ckpt {base} --out {tmp_path / 'm'}".split())
    assert not (tmp_path / "o").exists() and not (tmp_path / "m").exists()
