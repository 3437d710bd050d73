"""The trainer: one loop for text pretraining (steps) and the Coconut curriculum (epochs).

Everything a resumed run needs is in `last.pt`: model, optimizer, step, epoch, batch index,
stage, best accuracy, RNG states. Batches are a pure function of (seed, epoch, index), the
learning rate a pure function of the step, so `--resume` continues exactly. The same code runs
as one process or under `torchrun` (FSDP2, see `distributed.py`).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from coconutblt.checkpoint import install_entropy_model, model_checkpoint, read_checkpoint
from coconutblt.config_tree import dump_yaml
from coconutblt.data.stages import scheduled_stage
from coconutblt.errors import UserError
from coconutblt.model import HybridTransformer
from coconutblt.model.hybrid import next_id_loss
from coconutblt.runtime.distributed import (
    DistContext,
    all_mean,
    broadcast_object,
    full_model_state,
    full_optimizer_state,
    init_distributed,
    load_full_model_state,
    load_full_optimizer_state,
    shutdown,
)
from coconutblt.runtime.files import atomic_write, save_torch
from coconutblt.runtime.metrics import MetricsLog, plot_metrics
from coconutblt.runtime.optim import build_adamw, set_lr, warmup_cosine
from coconutblt.runtime.progress import progress_bar, show_rate
from coconutblt.runtime.trackers import Trackers
from coconutblt.train.batches import ReasoningBatches
from coconutblt.train.config import RunConfig, TrainingConfig, run_config_from_dict, stage_config
from coconutblt.train.data_setup import load_reasoning, load_text
from coconutblt.train.distributed import apply_activation_checkpointing, apply_fsdp, compile_blocks
from coconutblt.train.run_folder import (
    RunLock,
    check_new_run,
    clear_run,
    remove_partial_writes,
)

LN2 = math.log(2)


@dataclass
class TrainState:
    step: int = 0  # optimizer steps taken
    epoch: int = 0  # reasoning runs: current epoch
    batch_index: int = 0  # next micro-batch of the epoch (text runs: unused)
    stage: int = -1  # stage of the current optimizer (-1 = none yet)
    best_accuracy: float = -1.0
    last_loss: float = float("nan")


def build_optimizer(model: torch.nn.Module, t: TrainingConfig) -> torch.optim.AdamW:
    return build_adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))


def lr_at(step: int, total_steps: int, t: TrainingConfig) -> float:
    """The learning rate at `step` of a `total_steps` run under `t`'s schedule."""
    return warmup_cosine(step, total_steps, t.lr, t.warmup_steps, t.min_lr_ratio)


def stage_at(cfg: RunConfig, epoch: int) -> int:
    c = cfg.curriculum
    stage = scheduled_stage(epoch, c.epochs_per_stage, stage_config(cfg))
    return stage + (c.start_stage if c.mode in ("coconut", "pause", "no_thoughts") else 0)


# what `--resume` may change: the length of the run and its peak learning rate (the schedule
# is then the one of the new values, from the resume step on: "train longer") ...
RESUME_APPLIED = ("training.steps", "curriculum.num_epochs", "training.lr")
# ... and settings of the process or the logs, which leave what is trained alone
RESUME_FREE = (
    "training.device",
    "training.dtype",
    "training.num_threads",
    "training.compile",
    "training.activation_checkpointing",
    "training.log_every",
    "training.eval_every",
    "training.save_every",
    "training.eval_max_new_tokens",
    "training.max_steps_per_run",
    "training.report_to",
)


def _flat(tree: dict, prefix: str = "") -> dict:
    """Nested dict -> {"a.b": value} (lists stay values)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class Trainer:
    def __init__(
        self,
        cfg: RunConfig,
        out_dir: str | Path,
        resume: bool = False,
        show_progress: bool = True,
        overwrite: bool = False,
    ) -> None:
        """`resume`: continue from OUT/last.pt; `overwrite`: a new run may replace another run's
        checkpoints in OUT. The folder is locked (`OUT/train.lock`) until `fit` ends."""
        self.out = Path(out_dir)
        self.aux_losses: dict[str, float] = {}  # the latest auxiliary losses, for the logs
        self.ctx: DistContext = init_distributed(cfg.training.device, "training.device")
        self.show_progress = show_progress and self.ctx.is_main
        self.lock = RunLock(self.out)
        error = None
        if self.ctx.is_main:
            try:
                self.lock.acquire()
                if not resume:
                    check_new_run(self.out, overwrite)
            except UserError as exc:
                self.lock.release()
                error = str(exc)
        error = broadcast_object(error, self.ctx)
        if error:
            raise UserError(error)
        try:
            self._setup(cfg, resume, overwrite)
        except BaseException:
            self.lock.release()
            raise

    def _setup(self, cfg: RunConfig, resume: bool, overwrite: bool) -> None:
        cfg.check()
        if self.ctx.is_main:  # it holds the lock: no other run is writing these
            remove_partial_writes(self.out)
        resume_ckpt, applied = None, []
        self.saved_step: int | None = None  # step of the last.pt this run wrote or resumed from
        if resume:
            last = self.out / "last.pt"
            if not last.is_file():
                raise UserError(f"{last}: nothing to resume; start without --resume")
            resume_ckpt = read_checkpoint(last)
            cfg, applied = self._resumed_config(cfg, resume_ckpt, self.ctx.world_size, self.out)
        self.cfg = cfg
        t = cfg.training
        if t.patch_curriculum_steps > 0:
            if cfg.model.patcher != "entropy":
                raise UserError(
                    f"training.patch_curriculum_steps={t.patch_curriculum_steps} needs model.patcher=entropy "
                    f"(got {cfg.model.patcher!r}); set model.patcher=entropy or patch_curriculum_steps=0"
                )
            if self.ctx.enabled:
                raise UserError(
                    "training.patch_curriculum_steps runs in a single process only; "
                    "train the curriculum part without torchrun, then continue with init_from"
                )
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        self.device = self.ctx.device
        use_bf16 = t.dtype == "bfloat16" or (t.dtype == "auto" and self.device.type == "cuda")
        # under FSDP the mixed-precision policy casts; a single process uses autocast
        self.autocast_dtype = torch.bfloat16 if use_bf16 and not self.ctx.enabled else None
        self.model = self._build_model(use_bf16, resume_ckpt)
        self.state = TrainState()
        self.optimizer = build_optimizer(self.model, t)
        rank, world = self.ctx.rank, self.ctx.world_size
        if cfg.data.kind == "reasoning":
            self.data = load_reasoning(cfg)
            self.batches = ReasoningBatches(
                self.data.train,
                stage_config(cfg),
                t.batch_size,
                t.seed,
                rank,
                world,
                cfg.data.examples_per_epoch,
                cfg.data.group_by_length,
            )
            self.steps_per_epoch = math.ceil(len(self.batches) / t.grad_accum)
            self.total_steps = self.steps_per_epoch * cfg.curriculum.num_epochs
        else:
            from coconutblt.data.corpora import ByteWindows

            self.text = load_text(cfg)
            # one global batch per micro-step, each rank takes its rows: same data at any world size
            self.windows = ByteWindows(
                self.text.train, cfg.data.seq_len, t.batch_size * world, t.seed
            )
            self.total_steps = t.steps
        if resume_ckpt is not None:
            self._restore(resume_ckpt)
            self._check_resume_point(applied)
        self.log = None
        if self.ctx.is_main:
            if not resume and overwrite:
                removed = clear_run(self.out)
                if removed:
                    print(
                        f"--overwrite: removed the earlier run's {', '.join(removed)} from {self.out}"
                    )
            # the resolved config: `coconutblt train DIR/config.yaml key=value` reruns a variant
            atomic_write(self.out / "config.yaml", dump_yaml(self.cfg.to_dict()))
            resume_step = self.state.step if resume else None
            trackers = Trackers(
                t.report_to, self.out, config=self.cfg.to_dict(), resume_step=resume_step
            )
            self.log = MetricsLog(self.out / "metrics.jsonl", resume_step, trackers)

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _resumed_config(
        cfg: RunConfig, ckpt: dict, world: int, folder: Path
    ) -> tuple[RunConfig, list[str]]:
        """The given config, if it differs from the checkpoint's only in what a resume may change
        (`RESUME_APPLIED`, `RESUME_FREE`), and the applied changes as "key old -> new" lines. At
        another world size the per-process batch is rescaled so the global batch (and so the
        data order and the losses) stays the same."""
        saved = run_config_from_dict(ckpt["run_config"], source="checkpoint run_config")
        saved_world = int(ckpt.get("world_size", 1))
        global_batch = saved.training.batch_size * saved_world
        if global_batch % world:
            raise UserError(
                f"--resume: the run's global batch {global_batch} ({saved_world} processes x "
                f"{saved.training.batch_size}) does not split over {world} processes; resume "
                "with a world size that divides it"
            )
        before, given = _flat(saved.to_dict()), _flat(cfg.to_dict())
        if saved_world != world and given["training.batch_size"] == global_batch // world:
            given["training.batch_size"] = saved.training.batch_size  # the same global batch
        differ = [k for k in given if given[k] != before.get(k)]

        def listed(keys: list[str]) -> str:
            return ", ".join(f"{k} ({before.get(k)!r} -> {given[k]!r})" for k in keys)

        fix = (
            f"resume with the run's own config ({folder / 'config.yaml'}) or start a new run "
            "in another --out"
        )
        model = [k for k in differ if k.startswith("model.")]
        if model:
            raise UserError(
                f"--resume: the model differs from the checkpoint's in {listed(model)}; {fix}"
            )
        refused = [k for k in differ if k not in RESUME_APPLIED + RESUME_FREE]
        if refused:
            raise UserError(
                f"--resume cannot change {listed(refused)}: the data, schedule and curriculum are "
                f"the run's; only {', '.join(RESUME_APPLIED)} (to train longer) and run-time "
                f"settings such as training.device may change; {fix}"
            )
        applied = [f"{k} {before[k]} -> {given[k]}" for k in differ if k in RESUME_APPLIED]
        cfg = run_config_from_dict(cfg.to_dict(), source="command line")  # a copy
        cfg.training.batch_size = global_batch // world
        return cfg, applied

    def _check_resume_point(self, applied: list[str]) -> None:
        """Refuse a resume with nothing left to train; say where the run resumes."""
        s, c = self.state, self.cfg.curriculum
        text = self.cfg.data.kind == "text"
        done = s.step >= self.total_steps if text else s.epoch >= c.num_epochs
        if done and (self.out / "final.pt").is_file():
            key, value = (
                ("training.steps", self.cfg.training.steps)
                if text
                else ("curriculum.num_epochs", c.num_epochs)
            )
            raise UserError(
                f"--resume: the run in {self.out} already ended at step {s.step} ({key}={value}); "
                f"raise {key} to train longer"
            )
        if self.ctx.is_main:
            where = f"step {s.step} of {self.total_steps}" + ("" if text else f", epoch {s.epoch}")
            change = f"; applied {', '.join(applied)}" if applied else ""
            print(f"resumed at {where}{change}")

    def _initial_model(self) -> HybridTransformer:
        """The seeded model on the CPU with a trained entropy model / init_from weights loaded."""
        t, c = self.cfg.training, self.cfg.curriculum
        torch.manual_seed(t.seed)
        model = HybridTransformer(self.cfg.model)
        if t.entropy_model:
            install_entropy_model(model, t.entropy_model)
        if c.init_from:
            ckpt = read_checkpoint(c.init_from)
            weights, added = model.with_new_parts(ckpt["model"])
            if added:
                start = "as a no-op"
                if self.cfg.model.thought_read_init == "identity" and any(
                    "thought_read" in k for k in added
                ):
                    start += ", copy.thought_read.weight as the identity (model.thought_read_init)"
                print(f"init_from: {c.init_from} lacks {', '.join(added)}; they start {start}")
            try:
                model.load_state_dict(weights)
            except RuntimeError as exc:
                # torch's first line only says "Error(s) in loading state_dict": name the keys
                detail = " ".join(line.strip() for line in str(exc).splitlines()[1:])[:400]
                raise UserError(
                    f"{c.init_from}: weights do not fit this model config ({detail}); "
                    "give the model.* settings the checkpoint was trained with"
                ) from None
        return model

    def _prepare_blocks(self, model: HybridTransformer) -> None:
        """Activation checkpointing and `torch.compile` per block, as configured."""
        t = self.cfg.training
        if t.activation_checkpointing:
            apply_activation_checkpointing(model)
        if t.compile:
            compile_blocks(model, warn=self.ctx.is_main)

    def _build_model(self, bf16: bool, resume_ckpt: dict | None) -> torch.nn.Module:
        if not self.ctx.enabled:
            model = self._initial_model()
            if resume_ckpt is not None:
                model.load_state_dict(resume_ckpt["model"])
            self._prepare_blocks(model)
            return model.to(self.device)
        # rank 0 holds the real weights on the CPU; the other ranks never allocate the full model
        state = None
        if self.ctx.is_main:
            state = (
                resume_ckpt["model"]
                if resume_ckpt is not None
                else self._initial_model().state_dict()
            )
        with torch.device("meta"):
            model = HybridTransformer(self.cfg.model)
        self._prepare_blocks(model)
        apply_fsdp(model, bf16, self.device)
        model.to_empty(device=self.device)
        load_full_model_state(model, state, self.ctx)
        return model

    def _restore(self, ckpt: dict) -> None:
        """Train state, optimizer and RNGs from `last.pt` (the weights were loaded when built)."""
        ts = ckpt["train_state"]
        self.state = TrainState(**broadcast_object(ts["state"], self.ctx))
        self.saved_step = self.state.step
        if self.state.stage >= 0 or self.cfg.data.kind == "text":
            load_full_optimizer_state(self.model, self.optimizer, ts["optimizer"], self.ctx)
        torch.set_rng_state(ts["torch_rng"])
        random.setstate(ts["python_rng"])

    def checkpoint(self, name: str = "last.pt", with_train_state: bool = True) -> Path:
        """Write OUT/name atomically from rank 0 (gathering shards is a collective: all ranks call)."""
        path = self.out / name
        model_state = full_model_state(self.model, self.ctx)
        optim_state = (
            full_optimizer_state(self.model, self.optimizer, self.ctx) if with_train_state else None
        )
        if not self.ctx.is_main:
            return path
        extra = {
            "run_config": self.cfg.to_dict(),
            "stage": max(self.state.stage, 0),
            "step": self.state.step,
            "world_size": self.ctx.world_size,  # training.batch_size is per process
        }
        if with_train_state:
            extra["train_state"] = {
                "state": vars(self.state).copy(),
                "optimizer": optim_state,
                "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(),
            }
        ckpt = model_checkpoint(self.model, extra=extra, state=model_state)
        save_torch(ckpt, path)
        if name == "last.pt":
            self.saved_step = self.state.step
        return path

    def close(self) -> None:
        """End the process group (once, after `fit`, on every rank) and unlock the folder."""
        self.lock.release()
        shutdown(self.ctx)

    # ------------------------------------------------------------------ one step
    def _micro_loss(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        question_labels: torch.Tensor | None = None,
        answer_labels: torch.Tensor | None = None,
        thought_quotes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(objective to minimise, next-byte loss): the objective adds the auxiliary losses; the
        next-byte loss alone is what the logs, the progress bar and bits-per-byte report."""
        t = self.cfg.training
        with torch.autocast(
            self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
        ):
            ids = input_ids.to(self.device)
            out = self.model(
                ids,
                labels=labels.to(self.device),
                patch_starts_override=self._curriculum_starts(ids),
                # the thoughts' pointer targets: a model that does not read into thoughts
                # ignores them
                thought_quotes=None if thought_quotes is None else thought_quotes.to(self.device),
            )
        objective = out.loss
        if t.train_estimator and out.estimator_loss is not None:
            objective = objective + t.est_loss_weight * out.estimator_loss
        if out.next_patch_loss is not None:
            objective = objective + self.cfg.model.next_patch_loss_weight * out.next_patch_loss
        if out.copy_loss is not None:
            objective = objective + self.cfg.model.copy_loss_weight * out.copy_loss
            self.aux_losses["copy_loss"] = float(out.copy_loss.detach())  # for the logs
        if out.thought_copy_loss is not None:
            objective = objective + self.cfg.model.copy_loss_weight * out.thought_copy_loss
            self.aux_losses["thought_copy_loss"] = float(out.thought_copy_loss.detach())
        c = self.cfg.curriculum
        for weight, extra in (
            (c.question_loss_weight, question_labels),
            (c.answer_loss_weight, answer_labels),
        ):
            if weight > 0 and extra is not None:
                objective = objective + weight * next_id_loss(out.logits, extra.to(self.device))
        return objective, out.loss.detach()

    def _curriculum_starts(self, ids: torch.Tensor) -> torch.Tensor | None:
        """Patch boundaries of the patch-size curriculum at this step (None: the model's own)."""
        steps = self.cfg.training.patch_curriculum_steps
        if steps <= 0:
            return None
        from coconutblt.train.patch_curriculum import curriculum_patch_starts

        return curriculum_patch_starts(
            self.model, ids, None, self.state.step, steps, seed=self.cfg.training.seed
        )

    def _optimizer_step(self, micro_batches: list[tuple[torch.Tensor, ...]]) -> float:
        """One optimizer step over micro-batches; returns the next-byte loss averaged over ranks."""
        t = self.cfg.training
        set_lr(self.optimizer, lr_at(self.state.step, self.total_steps, t))
        total, total_objective = 0.0, 0.0
        for i, micro in enumerate(micro_batches):
            if self.ctx.enabled:  # reduce gradients once, after the last micro-batch
                self.model.set_requires_gradient_sync(i == len(micro_batches) - 1)
            objective, loss = self._micro_loss(*micro)
            (objective / len(micro_batches)).backward()
            total += loss.item() / len(micro_batches)
            total_objective += objective.item() / len(micro_batches)
        total = all_mean(total, self.ctx)
        if not (math.isfinite(total) and math.isfinite(total_objective)):
            saved = (
                f" (the last good checkpoint is {self.out / 'last.pt'}, at step {self.saved_step})"
                if self.saved_step is not None
                else " (no checkpoint was saved yet)"
            )
            raise UserError(
                f"non-finite loss at step {self.state.step}; lower training.lr or raise "
                f"training.warmup_steps{saved}"
            )
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self.state.last_loss = total
        return total

    # ------------------------------------------------------------------ loops
    def fit(self, bar: tqdm | None = None) -> dict:
        """Train to the end. `bar`: a caller's progress bar that spans several runs (a recipe),
        advanced one tick per optimizer step and left open; by default the run has its own."""
        self.model.train()
        own_bar = bar is None
        if own_bar:
            bar = progress_bar(
                self.total_steps, initial=self.state.step, disable=not self.show_progress
            )
        try:
            summary = (
                self._fit_reasoning(bar)
                if self.cfg.data.kind == "reasoning"
                else self._fit_text(bar)
            )
            if own_bar:
                bar.close()
            if self.ctx.is_main:
                plot_metrics(
                    self.out / "metrics.jsonl", self.out / "metrics.png", title=str(self.out)
                )
        except KeyboardInterrupt:
            self.checkpoint()
            bar.close()
            if self.ctx.is_main:
                print(
                    f"interrupted: saved {self.out / 'last.pt'} at step {self.state.step}; continue with --resume"
                )
            raise
        finally:
            if self.log is not None:
                self.log.close()  # flushes the trackers
            self.lock.release()
        return summary

    def _log(self, record: dict) -> None:
        if self.log is not None:
            self.log.write(record)

    def _stop_requested(self, steps_this_run: int) -> bool:
        limit = self.cfg.training.max_steps_per_run
        return limit > 0 and steps_this_run >= limit

    def _fit_text(self, bar) -> dict:
        t = self.cfg.training
        started, steps_this_run, bytes_seen = time.perf_counter(), 0, 0
        bs, rank = t.batch_size, self.ctx.rank
        while self.state.step < self.total_steps:
            step = self.state.step
            micro = []
            for i in range(t.grad_accum):
                ids = self.windows.batch(step * t.grad_accum + i)[rank * bs : (rank + 1) * bs]
                micro.append((ids, ids))
            loss = self._optimizer_step(micro)
            bytes_seen += sum(m[0].numel() for m in micro) * self.ctx.world_size
            steps_this_run += 1
            rate = bytes_seen / max(time.perf_counter() - started, 1e-9)
            bar.update(1)
            show_rate(bar, loss, rate, bpb=f"{loss / LN2:.3f}")
            if self.state.step % t.log_every == 0 or self.state.step == self.total_steps:
                self._log(
                    {
                        "type": "train",
                        "step": self.state.step,
                        "loss": loss,
                        "bpb": loss / LN2,
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "bytes_per_s": rate,
                        "stage": 0,
                        **self.aux_losses,
                    }
                )
            if t.eval_every and self.state.step % t.eval_every == 0:
                self._eval_text()
            if t.save_every and self.state.step % t.save_every == 0:
                self.checkpoint()
            if self._stop_requested(steps_this_run):
                self.checkpoint()
                return {"stopped_at": self.state.step}
        heldout = self._eval_text()
        self.checkpoint()
        self.checkpoint("final.pt", with_train_state=False)
        return {
            "steps": self.state.step,
            "train_loss": self.state.last_loss,
            "heldout_bpb": heldout,
        }

    @torch.no_grad()
    def _eval_text(self, max_batches: int = 8) -> float:
        """Held-out bits per byte (every rank runs the same windows: forward is a collective)."""
        from coconutblt.data.corpora import ByteWindows

        self.model.eval()
        seq = min(self.cfg.data.seq_len, max(len(self.text.heldout) - 2, 2))
        windows = ByteWindows(self.text.heldout, seq, self.cfg.training.batch_size)
        total, count = 0.0, 0
        for ids in windows.sequential(max_batches):
            ids = ids.to(self.device)
            out = self.model(ids, labels=ids)
            n = ids[:, 1:].numel()
            total += out.loss.item() * n
            count += n
        self.model.train()
        bpb = total / max(count, 1) / LN2
        self._log({"type": "eval", "step": self.state.step, "bpb": bpb, "stage": 0})
        return bpb

    def _fit_reasoning(self, bar) -> dict:
        t, c = self.cfg.training, self.cfg.curriculum
        started, steps_this_run, bytes_seen = time.perf_counter(), 0, 0
        history = []
        while self.state.epoch < c.num_epochs:
            epoch = self.state.epoch
            stage = stage_at(self.cfg, epoch)
            if stage != self.state.stage:
                if self.state.stage >= 0 and c.reset_optimizer:
                    self.optimizer = build_optimizer(self.model, t)
                self.state.stage = stage
                self.state.best_accuracy = -1.0  # the best checkpoint is chosen within a stage
            n_batches = len(self.batches)
            while self.state.batch_index < n_batches:
                idx = range(
                    self.state.batch_index, min(self.state.batch_index + t.grad_accum, n_batches)
                )
                batches = [self.batches.batch(epoch, i, stage) for i in idx]
                loss = self._optimizer_step(
                    [
                        (
                            b["input_ids"],
                            b["labels"],
                            b["question_labels"],
                            b["answer_labels"],
                            b["thought_quotes"],
                        )
                        for b in batches
                    ]
                )
                self.state.batch_index = idx[-1] + 1
                steps_this_run += 1
                bytes_seen += sum(int(b["n_bytes"]) for b in batches) * self.ctx.world_size
                rate = bytes_seen / max(time.perf_counter() - started, 1e-9)
                bar.update(1)
                show_rate(bar, loss, rate, stage=stage, epoch=epoch)
                if self.state.step % t.log_every == 0:
                    self._log(
                        {
                            "type": "train",
                            "step": self.state.step,
                            "epoch": epoch,
                            "stage": stage,
                            "loss": loss,
                            "lr": self.optimizer.param_groups[0]["lr"],
                            "bytes_per_s": rate,
                            **self.aux_losses,
                        }
                    )
                if t.save_every and self.state.step % t.save_every == 0:
                    self.checkpoint()
                if self._stop_requested(steps_this_run):
                    self.checkpoint()
                    return {"stopped_at": self.state.step}
            result = self.validate(stage)
            history.append({"epoch": epoch, "stage": stage, **result.summary()})
            self._log(
                {
                    "type": "eval",
                    "step": self.state.step,
                    "epoch": epoch,
                    "stage": stage,
                    **result.summary(),
                }
            )
            if self.show_progress:
                per_answer = "".join(f", {k} {v:.0%}" for k, v in result.per_answer().items())
                bar.write(
                    f"epoch {epoch} stage {stage}: val accuracy {result.accuracy:.1%}{per_answer}, "
                    f"{result.avg_bytes:.1f} bytes generated, {result.avg_thoughts:.1f} thoughts"
                )
                for line in result.warnings():
                    bar.write(line)
            self.state.epoch += 1
            self.state.batch_index = 0
            if result.accuracy > self.state.best_accuracy:
                self.state.best_accuracy = result.accuracy
                self.checkpoint("best.pt", with_train_state=False)
            if self.state.epoch >= c.num_epochs or stage_at(self.cfg, self.state.epoch) != stage:
                self.checkpoint(f"stage{stage}.pt", with_train_state=False)
            self.checkpoint()
        self.checkpoint("final.pt", with_train_state=False)
        return {
            "steps": self.state.step,
            "history": history,
            "best_accuracy": self.state.best_accuracy,
        }

    def validate(self, stage: int):
        """Validation accuracy at `stage`. Under FSDP, rank 0 evaluates an unsharded copy
        (generation stops at different times per rank, which collectives cannot follow)."""
        from coconutblt.inference.evaluate import evaluate_examples

        kwargs = dict(
            batch_size=max(self.cfg.training.batch_size, 32),
            max_new_tokens=self.cfg.training.eval_max_new_tokens,
        )
        if not self.ctx.enabled:
            return evaluate_examples(
                self.model, self.data.val, stage_config(self.cfg), stage, **kwargs
            )
        state = full_model_state(self.model, self.ctx)
        result = None
        if self.ctx.is_main:
            copy = HybridTransformer(self.cfg.model)
            copy.load_state_dict(state)
            result = evaluate_examples(
                copy.to(self.device), self.data.val, stage_config(self.cfg), stage, **kwargs
            )
        return broadcast_object(result, self.ctx)
