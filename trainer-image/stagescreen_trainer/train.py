"""The time-budgeted training run: the loop the paper screened (section 4.1), made resumable.

Read top to bottom: configuration, device, data and tokenizer, model and optimiser, resume,
training loop, evaluation, record. The departures from the autoresearch reference loop:
- every hyperparameter comes from the environment (the run contract) instead of constants;
- the budget counts only training steps; the first EXCLUDE_STEPS steps (compile, warm-up),
  the first step after a resume, start-up, checkpoints and evaluation are timed apart;
- with MAX_STEPS the schedule runs on step progress, so a CPU run's curve is reproducible;
- checkpoints every CHECKPOINT_EVERY training seconds and on SIGTERM; a restart resumes;
- NaN or a loss above DIVERGE_LOSS ends the run as `diverged` with a record, not a bare exit;
- MFU is against the peak of the device the run is on, looked up or measured once and cached;
- bf16 autocast wherever bf16 matmuls are fast (CUDA, CPUs with AMX/AVX512-BF16);
- the garbage collector is frozen after start-up, so its pauses are not charged to the budget.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from stagescreen_contract.record import RunRecord
from stagescreen_contract.status import (
    EXIT_BAD_CONFIG,
    EXIT_DIVERGED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    RunStatus,
)
from stagescreen_contract.variables import VARIABLES
from stagescreen_trainer.checkpoint import load_checkpoint, save_checkpoint
from stagescreen_trainer.config import (
    ConfigError,
    TrainConfig,
    build_parser,
    coded_levels_of,
    load_config,
)
from stagescreen_trainer.data import train_batches, validation_batches
from stagescreen_trainer.device import (
    Peak,
    compute_dtype,
    device_name,
    peak_flops,
    peak_memory_bytes,
    pick_device,
    synchronize,
)
from stagescreen_trainer.evaluate import Evaluation, evaluate_bpb
from stagescreen_trainer.model import GPT, GPTConfig, reference_lr_scale
from stagescreen_trainer.muon import MuonAdamW
from stagescreen_trainer.provenance import provenance
from stagescreen_trainer.schedule import (
    lr_multiplier,
    muon_momentum,
    muon_weight_decay,
    progress_of,
)
from stagescreen_trainer.storage import Location
from stagescreen_trainer.tokenizer import (
    BYTES_FILE,
    META_FILE,
    RANKS_FILE,
    Tokenizer,
    load_token_bytes,
)

# datetime.UTC needs Python 3.11; CUDA base images may ship an older interpreter.
UTC = timezone.utc  # noqa: UP017
CURVE_COLUMNS = ("step", "elapsed_s", "tokens", "train_loss", "lr", "lr_multiplier")


def gpt_config(config: TrainConfig, vocab_size: int) -> GPTConfig:
    """The network's shape from the run's hyperparameters and the tokenizer's vocabulary."""
    return GPTConfig(
        vocab_size=vocab_size,
        n_layer=config.DEPTH,
        n_head=config.n_heads,
        n_embd=config.width,
        sequence_len=config.SEQ_LEN,
        window_pattern=config.WINDOW_PATTERN,
    )


class Diverged(RuntimeError):
    """The training loss became NaN/inf or exceeded DIVERGE_LOSS."""


def divergence_limit(diverge_loss: float, vocab_size: int) -> float:
    """The loss above which a run counts as exploding.

    Logits are soft-capped at 15, so the loss can never pass about 30 + ln(vocab): a fixed
    limit such as the reference's 100 only ever catches NaN. Twice the loss of a uniform
    guess, 2 ln(vocab), is far above any healthy step after the first and still reachable.
    """
    return diverge_loss if diverge_loss > 0 else 2 * math.log(vocab_size)


def divergence(loss: float, smoothed: float, limit: float, step: int) -> str | None:
    """Why the run has diverged, or None.

    NaN/inf ends the run at once; a finite loss only when its smoothed value (the debiased
    EMA, so step 1 counts in full) is above the limit, so a single spike that training would
    ride out does not end a screening run.
    """
    if not math.isfinite(loss):
        return f"train loss {loss} at step {step}"
    if smoothed > limit:
        return f"smoothed train loss {smoothed:.4g} at step {step} above DIVERGE_LOSS={limit:.4g}"
    return None


class Interrupted(RuntimeError):
    """SIGTERM arrived; a checkpoint was written and a restart will resume."""


# -----------------------------------------------------------------------------------------
# Log: progress lines to stdout, kept for log.txt (and carried across resumes)
# -----------------------------------------------------------------------------------------


@dataclass
class Log:
    lines: list[str] = field(default_factory=list)

    def __call__(self, message: str, *, echo: bool = True) -> None:
        """Keep `message` for log.txt and, unless `echo` is off, print it."""
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        for line in message.splitlines() or [""]:
            self.lines.append(f"{stamp} {line}")
            if echo:
                print(line, flush=True)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@dataclass
class Progress:
    """Counters of the run; all of it goes into checkpoints and the record."""

    step: int = 0
    tokens: int = 0
    training_s: float = 0.0  # charged to the budget
    warmup_s: float = 0.0  # excluded steps (compile, warm-up, first step after a resume)
    counted_tokens: int = 0  # tokens of the steps charged to the budget
    checkpoint_s: float = 0.0
    last_checkpoint_training_s: float = 0.0
    smooth_loss: float = 0.0
    last_loss: float = float("nan")
    # one list per curve.parquet column: columns pickle far smaller than rows in checkpoints
    curve: dict[str, list[float]] = field(
        default_factory=lambda: {name: [] for name in CURVE_COLUMNS}
    )

    def debiased_loss(self) -> float:
        return self.smooth_loss / (1 - 0.9**self.step) if self.step else float("nan")


# -----------------------------------------------------------------------------------------
# The run
# -----------------------------------------------------------------------------------------


class Run:
    def __init__(self, config: TrainConfig, log: Log) -> None:
        self.config, self.log = config, log
        self.started = time.time()
        self.started_at = datetime.now(UTC).isoformat()
        self.progress = Progress()
        self.stop_requested = False
        self.resumed_from: dict[str, Any] | None = None
        self.facts: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.parameters: int | None = None
        self.flops_per_token: float | None = None
        self.peak: Peak | None = None
        self.cache = Path(tempfile.mkdtemp(prefix="stagescreen-trainer-"))

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True

    # --- device -------------------------------------------------------------------------
    def setup_device(self) -> None:
        c = self.config
        self.device = pick_device(c.DEVICE)
        if c.THREADS:
            torch.set_num_threads(c.THREADS)
        random.seed(c.RUN_SEED)
        torch.manual_seed(c.RUN_SEED)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(c.RUN_SEED)
            torch.set_float32_matmul_precision("high")
        # CPU kernels used here are deterministic for a fixed thread count, in either dtype
        self.compute_dtype = compute_dtype(self.device, c.DTYPE)
        self.autocast: contextlib.AbstractContextManager[object] = (
            torch.autocast(self.device.type, dtype=self.compute_dtype)
            if self.compute_dtype != torch.float32
            else contextlib.nullcontext()
        )
        self.compile = c.COMPILE == "1" or (c.COMPILE == "auto" and self.device.type == "cuda")
        self.attention = attention_kind(c.ATTENTION, self.device, self.compile)

    # --- data and tokenizer -------------------------------------------------------------
    def setup_data(self) -> None:
        c = self.config
        tokenizer_location = Location(c.TOKENIZER_URI)
        self.tokenizer_location = tokenizer_location
        folder = self.cache / "tokenizer"
        for name in (RANKS_FILE, META_FILE, BYTES_FILE):
            copy = tokenizer_location.local_copy(name, folder)
            if copy.parent != folder:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(copy.read_bytes())
        self.tokenizer = Tokenizer.load(folder)
        self.token_bytes = torch.tensor(
            load_token_bytes(folder), dtype=torch.int64, device=self.device
        )
        data = Location(c.DATA_URI)
        self.data = data
        self.train = train_batches(
            data, self.tokenizer, c.DEVICE_BATCH_SIZE, c.SEQ_LEN, c.RUN_SEED, self.cache / "shards"
        )

    # --- model and optimiser ------------------------------------------------------------
    def setup_model(self) -> None:
        c = self.config
        self.model_config = gpt_config(c, self.tokenizer.vocab_size)
        model = GPT(self.model_config, attention=self.attention)
        model.init_weights()
        self.model = model.to(self.device)
        self.model.prepare_masks(self.device)
        self.optimizer = self.build_optimizer()
        self.forward: Any = torch.compile(self.model, dynamic=False) if self.compile else self.model
        self.flops_per_token = self.model.flops_per_token()
        self.parameters = self.model.parameter_count()
        self.peak = peak_flops(self.device, c.PEAK_FLOPS, self.compute_dtype)
        self.facts["device_name"] = device_name(self.device)
        self.facts["attention"] = attention_description(self.model, self.device, self.attention)

    def build_optimizer(self) -> MuonAdamW:
        c, groups = self.config, self.model.parameter_groups()
        scale = reference_lr_scale(c.width)
        betas = (c.ADAM_BETA1, c.ADAM_BETA2)
        adam = {"kind": "adamw", "eps": 1e-10, "weight_decay": 0.0, "betas": betas}
        param_groups = [
            {**adam, "params": groups["head"], "lr": c.UNEMBEDDING_LR * scale},
            {**adam, "params": groups["embedding"], "lr": c.EMBEDDING_LR * scale},
            {**adam, "params": groups["value_embedding"], "lr": c.EMBEDDING_LR * scale},
            {**adam, "params": groups["resid_scalar"], "lr": c.SCALAR_LR * 0.01},
            {**adam, "params": groups["x0_scalar"], "lr": c.SCALAR_LR, "betas": (0.96, 0.95)},
        ]
        for shape in sorted({tuple(p.shape) for p in groups["matrix"]}):
            param_groups.append(
                {
                    "kind": "muon",
                    "params": [p for p in groups["matrix"] if tuple(p.shape) == shape],
                    "lr": c.MATRIX_LR,
                    "momentum": c.MUON_MOMENTUM_START,
                    "beta2": 0.95,
                    "ns_steps": 5,
                    "weight_decay": c.WEIGHT_DECAY,
                }
            )
        param_groups = [g for g in param_groups if g["params"]]
        # Polar Express runs in bf16 wherever bf16 matmuls are fast, as the reference does on
        # CUDA, even when the model computes in fp32 (DTYPE=float32)
        self.orthogonal_dtype = compute_dtype(self.device, "auto")
        return MuonAdamW(param_groups, self.orthogonal_dtype, compile_update=self.compile)

    # --- resume -------------------------------------------------------------------------
    def resume(self) -> None:
        self.checkpoints = Location(self.config.checkpoint_uri)
        state = load_checkpoint(self.checkpoints)
        if state is None:
            return
        if state["fingerprint"] != json.loads(json.dumps(self.config.fingerprint())):
            raise ConfigError(
                f"CHECKPOINT_URI={self.config.checkpoint_uri!r}: holds a checkpoint of a different "
                "configuration; point CHECKPOINT_URI at an empty location or rerun the same config"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.train.load_state_dict(state["data"])
        self.progress = Progress(**state["progress"])
        torch.set_rng_state(state["rng_cpu"])
        if self.device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        random.setstate(_to_tuple(state["rng_python"]))
        self.log.lines[:0] = state["log"]
        self.resumed_from = {
            "uri": self.checkpoints.uri("state.pt"),
            "step": self.progress.step,
            "training_s": self.progress.training_s,
            "saved_at": state["saved_at"],
        }
        self.log(
            f"resumed from {self.resumed_from['uri']} at step {self.progress.step}, "
            f"{self.progress.training_s:.1f}s of {self.config.TIME_BUDGET:.0f}s budget charged"
        )

    def checkpoint(self, reason: str) -> None:
        started = time.perf_counter()
        p = self.progress
        p.last_checkpoint_training_s = p.training_s
        state = {
            "fingerprint": json.loads(json.dumps(self.config.fingerprint())),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "data": self.train.state_dict(),
            "progress": {k: getattr(p, k) for k in p.__dataclass_fields__},
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device)
            if self.device.type == "cuda"
            else None,
            "rng_python": _to_lists(random.getstate()),
            "log": list(self.log.lines),
            "saved_at": datetime.now(UTC).isoformat(),
        }
        size = save_checkpoint(self.checkpoints, state)
        elapsed = time.perf_counter() - started
        p.checkpoint_s += elapsed
        self.log(
            f"checkpoint ({reason}) at step {p.step}, training {p.training_s:.1f}s: "
            f"{size / 1e6:.1f} MB in {elapsed:.2f}s"
        )

    def checkpoint_before_evaluation(self) -> None:
        """Keep a finished training safe while evaluation runs.

        The loop takes no interval checkpoint on the step that ends the budget, and SIGTERM
        is not honoured during evaluation, so an eviction then (SIGKILL after the grace
        period) would retrain up to CHECKPOINT_EVERY seconds. Runs long enough to checkpoint
        at all write one more here; a restart then resumes at the budget and only evaluates.
        """
        c, p = self.config, self.progress
        long_enough = c.CHECKPOINT_EVERY and c.TIME_BUDGET > c.CHECKPOINT_EVERY
        if long_enough and p.training_s > p.last_checkpoint_training_s:
            self.checkpoint("before evaluation")

    # --- training loop ------------------------------------------------------------------
    def finished(self) -> bool:
        c, p = self.config, self.progress
        return p.training_s >= c.TIME_BUDGET or bool(c.MAX_STEPS and p.step >= c.MAX_STEPS)

    def train_loop(self) -> None:
        c, p = self.config, self.progress
        first_step = p.step
        last_print = time.perf_counter()
        self.log(
            f"training {self.parameters or 0:,} parameters, "
            f"{c.grad_accum_steps} micro-batch(es) of "
            f"{c.DEVICE_BATCH_SIZE}x{c.SEQ_LEN} per step, budget {c.TIME_BUDGET:.0f}s"
            + (f" or {c.MAX_STEPS} steps" if c.MAX_STEPS else "")
        )
        while not self.finished():
            if self.stop_requested:
                self.checkpoint("SIGTERM")
                raise Interrupted(
                    f"SIGTERM at step {p.step}; checkpoint written, restart to resume"
                )
            synchronize(self.device)
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=self.device)
            for micro in range(c.grad_accum_steps):
                inputs, targets = self.train.next_batch()
                inputs = inputs.to(self.device, non_blocking=True)
                targets = targets.to(self.device, non_blocking=True)
                loss = self.compiled_forward(
                    inputs, targets, first=p.step == first_step and micro == 0
                )
                loss_sum += loss.detach()
                (loss / c.grad_accum_steps).backward()
            progress = progress_of(p.training_s, p.step, c)
            lrm = lr_multiplier(progress, c)
            for group in self.optimizer.param_groups:
                group["lr"] = group["initial_lr"] * lrm
                if group["kind"] == "muon":
                    group["momentum"] = muon_momentum(p.step, c)
                    group["weight_decay"] = muon_weight_decay(progress, c)
            self.optimizer.step()
            self.model.zero_grad(set_to_none=True)
            train_loss = float((loss_sum / c.grad_accum_steps).item())
            synchronize(self.device)
            dt = time.perf_counter() - t0
            # --- accounting: warm-up steps are timed apart from the budget
            if p.step < c.EXCLUDE_STEPS or (p.step == first_step and first_step > 0):
                p.warmup_s += dt
            else:
                p.training_s += dt
                p.counted_tokens += c.TOTAL_BATCH_SIZE
            p.step += 1
            p.tokens += c.TOTAL_BATCH_SIZE
            p.last_loss = train_loss
            p.smooth_loss = 0.9 * p.smooth_loss + 0.1 * train_loss
            point = (p.step, p.training_s, p.tokens, train_loss, c.MATRIX_LR * lrm, lrm)
            for name, value in zip(CURVE_COLUMNS, point, strict=True):
                p.curve[name].append(value)
            limit = divergence_limit(c.DIVERGE_LOSS, self.tokenizer.vocab_size)
            reason = divergence(train_loss, p.debiased_loss(), limit, p.step)
            if reason:
                raise Diverged(reason)
            now = time.perf_counter()
            if now - last_print >= c.PROGRESS_EVERY or p.step == 1 or self.finished():
                last_print = now
                self.log(self.progress_line(dt))
            if (
                c.CHECKPOINT_EVERY
                and not self.finished()
                and p.training_s - p.last_checkpoint_training_s >= c.CHECKPOINT_EVERY
            ):
                self.checkpoint("interval")

    def compiled_forward(self, inputs: torch.Tensor, targets: torch.Tensor, first: bool) -> Any:
        """The loss; if torch.compile cannot build the graph (no C compiler for Triton in a
        slim image, an unsupported op), fall back to eager once, say so, and go on."""
        try:
            with self.autocast:
                return self.forward(inputs, targets)
        except torch.OutOfMemoryError:
            raise
        except Exception as error:
            if not (first and self.compile):
                raise
            self.log(f"torch.compile failed, running eager: {type(error).__name__}: {error}")
            self.facts["compile_error"] = f"{type(error).__name__}: {str(error)[:500]}"
            self.compile, self.forward = False, self.model
            self.attention = self.model.attention = "sdpa"  # flex is only fast compiled
            self.facts["attention"] = attention_description(self.model, self.device, "sdpa")
            with self.autocast:
                return self.forward(inputs, targets)

    def progress_line(self, dt: float) -> str:
        c, p = self.config, self.progress
        tok_s = c.TOTAL_BATCH_SIZE / dt if dt > 0 else 0.0
        mfu = 100 * (self.flops_per_token or 0) * tok_s / (self.peak.flops if self.peak else 1)
        if c.MAX_STEPS:
            done = p.step / c.MAX_STEPS
            eta = (c.MAX_STEPS - p.step) * dt
        else:
            done = p.training_s / c.TIME_BUDGET
            eta = max(0.0, c.TIME_BUDGET - p.training_s)
        lrm = lr_multiplier(progress_of(p.training_s, p.step, c), c)
        return (
            f"step {p.step:05d} | training {p.training_s:.2f}s/{c.TIME_BUDGET:.0f}s "
            f"({100 * done:.1f}%) | loss {p.debiased_loss():.4f} | lrm {lrm:.2f} "
            f"| {tok_s:,.0f} tok/s | mfu {mfu:.1f}% | epoch {self.train.epoch} | eta {eta:.0f}s"
        )

    # --- evaluation ---------------------------------------------------------------------
    def evaluate(self) -> Evaluation:
        """One pass over the validation shard, up to EVAL_TOKENS targets."""
        c = self.config
        self.model.eval()
        batches = validation_batches(
            self.data,
            self.tokenizer,
            c.eval_batch_size,
            c.SEQ_LEN,
            c.EVAL_TOKENS,
            self.cache / "shards",
        )
        result = evaluate_bpb(self.forward, batches, self.token_bytes, self.device, self.autocast)
        if result.targets < c.EVAL_TOKENS:
            warning = (
                f"EVAL_TOKENS={c.EVAL_TOKENS} is more than the validation shard holds: scored "
                f"all {result.targets} of its tokens once"
            )
            self.warnings.append(warning)
            self.log(f"warning: {warning}")
        return result

    # --- record -------------------------------------------------------------------------
    def record(
        self,
        status: RunStatus,
        reason: str,
        evaluation: Evaluation | None,
        timings: dict[str, float],
    ) -> RunRecord:
        """The run's record; a number that came out NaN or infinite is recorded as None."""
        c, p = self.config, self.progress
        tokens_per_s = p.counted_tokens / p.training_s if p.training_s > 0 else None
        peak = self.peak
        mfu = (
            self.flops_per_token * tokens_per_s / peak.flops
            if tokens_per_s and peak and self.flops_per_token
            else None
        )
        device = getattr(self, "device", None)
        memory, memory_kind = peak_memory_bytes(device) if device is not None else (None, None)
        return RunRecord(
            study=c.STUDY,
            stage=c.STAGE,
            run_id=c.RUN_ID,
            condition_id=c.CONDITION_ID,
            coded_levels=c.coded_levels,
            hyperparameters=c.hyperparameters(),
            budget_s=c.TIME_BUDGET,
            max_steps=c.MAX_STEPS or None,
            seed=c.RUN_SEED,
            pool=c.POOL,
            status=status,
            reason=reason,
            val_bpb=evaluation.val_bpb if evaluation else None,
            eval_tokens=evaluation.targets if evaluation else None,
            eval_bytes=evaluation.bytes if evaluation else None,
            warnings=list(self.warnings),
            train_loss=p.debiased_loss() if p.step else None,
            train_loss_last=p.last_loss if p.step else None,
            steps=p.step,
            tokens=p.tokens,
            parameters=self.parameters,
            flops_per_token=self.flops_per_token,
            training_s=p.training_s,
            warmup_s=p.warmup_s,
            checkpoint_s=p.checkpoint_s,
            startup_s=timings.get("startup_s"),
            eval_s=timings.get("eval_s"),
            wall_s=time.time() - self.started,
            tokens_per_s=tokens_per_s,
            mfu=mfu,
            peak_flops=peak.flops if peak else None,
            peak_flops_source=peak.source if peak else None,
            peak_memory_bytes=memory,
            peak_memory_kind=memory_kind,
            device=str(device) if device is not None else None,
            attention=self.facts.get("attention"),
            compute_dtype=_dtype_name(getattr(self, "compute_dtype", None)),
            orthogonal_dtype=_dtype_name(getattr(self, "orthogonal_dtype", None)),
            compiled=getattr(self, "compile", None),
            compile_error=self.facts.get("compile_error")
            or getattr(getattr(self, "optimizer", None), "compile_error", None),
            threads=torch.get_num_threads(),
            resumed_from=self.resumed_from,
            provenance=provenance(
                self.facts.get("device_name") or (device_name(device) if device else None),
                self.data.fetched if hasattr(self, "data") else {},
                self.tokenizer_location.fetched if hasattr(self, "tokenizer_location") else {},
                code_version=c.CODE_VERSION or None,
            ),
            started_at=self.started_at,
            finished_at=datetime.now(UTC).isoformat(),
        )


def attention_kind(requested: str, device: torch.device, compiled: bool) -> str:
    """Which kernel serves the short-window layers (full windows always use causal SDPA).

    flex_attention with a sliding-window block mask skips the masked-out blocks and runs as
    a fused kernel, but only when compiled on CUDA; elsewhere SDPA with a band mask.
    """
    if requested == "sdpa" or device.type != "cuda":
        return "sdpa"
    return "flex" if requested == "flex" or compiled else "sdpa"


def attention_description(model: GPT, device: torch.device, attention: str) -> str:
    """Which kernels served attention, as recorded in the run record."""
    short = [w for w in model.windows if w < model.config.sequence_len - 1]
    kinds = ["sdpa is_causal (flash where available) for full windows"]
    if short and attention == "flex":
        kinds.append("flex_attention sliding-window block mask for short windows")
    elif short:
        kinds.append("sdpa boolean band mask for short windows")
    return f"{' + '.join(kinds)} on {device.type}"


def write_outputs(
    config: TrainConfig, record: RunRecord, curve: dict[str, list[float]], log: Log
) -> None:
    """curve.parquet and log.txt first, result.json last: its presence means the run is over."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Location(config.RESULT_URI)
    table = pa.table({name: curve[name] for name in CURVE_COLUMNS})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    out.put_bytes("curve.parquet", sink.getvalue().to_pybytes())
    out.put_bytes("log.txt", log.text().encode())
    out.put_bytes("result.json", record_bytes(record))


def record_bytes(record: RunRecord) -> bytes:
    """result.json as written: the whole record, indented, strict JSON."""
    return (json.dumps(record.model_dump(mode="json"), indent=2, allow_nan=False) + "\n").encode()


def _dtype_name(dtype: torch.dtype | None) -> str | None:
    return None if dtype is None else str(dtype).removeprefix("torch.")


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_tuple(value: Any) -> Any:
    return tuple(_to_tuple(v) for v in value) if isinstance(value, list) else value


def main(argv: list[str] | None = None) -> int:
    # --- configuration: fail before any work --------------------------------------------
    try:
        config = load_config(argv=argv)
    except ConfigError as error:
        reason = f"bad configuration: {error}"
        print(reason, file=sys.stderr)
        record_rejected(reason, raw_settings(os.environ, argv))
        return EXIT_BAD_CONFIG
    run = Run(config, Log())
    signal.signal(signal.SIGTERM, run.on_sigterm)
    try:
        return execute(run)
    finally:
        shutil.rmtree(run.cache, ignore_errors=True)  # downloaded shards and tokenizer


def execute(run: Run) -> int:
    """Set up, train, evaluate, record; every ending but SIGTERM (to be resumed) is recorded."""
    config, log = run.config, run.log
    timings: dict[str, float] = {}
    status, reason, code = RunStatus.SUCCEEDED, "", EXIT_OK
    evaluation: Evaluation | None = None
    try:
        run.setup_device()
        run.setup_data()
        run.setup_model()
        run.resume()
        # Everything built so far lives for the whole run: freeze it out of the collector's
        # scans, so its pauses during training (charged to the budget) stay short.
        gc.collect()
        gc.freeze()
        timings["startup_s"] = time.time() - run.started
        log(
            f"device {run.device} ({run.facts['device_name']}), "
            f"attention: {run.facts['attention']}, compile={run.compile}, "
            f"peak {run.peak.flops / 1e12 if run.peak else 0:.2f} TFLOP/s "
            f"({run.peak.source if run.peak else '-'})"
        )
        run.train_loop()
        run.checkpoint_before_evaluation()
        started_eval = time.perf_counter()
        evaluation = run.evaluate()
        timings["eval_s"] = time.perf_counter() - started_eval
    except ConfigError as error:
        status, reason, code = RunStatus.FAILED, f"bad configuration: {error}", EXIT_BAD_CONFIG
    except Interrupted as stop:
        log(str(stop))
        with contextlib.suppress(Exception):
            Location(config.RESULT_URI).put_bytes("log.txt", log.text().encode())
        print(str(stop), file=sys.stderr)
        return EXIT_INTERRUPTED
    except Diverged as error:
        status, reason, code = RunStatus.DIVERGED, str(error), EXIT_DIVERGED
    except Exception as error:  # any other ending is still recorded, with its reason
        log(traceback.format_exc(), echo=False)  # log.txt keeps it; the console gets the reason
        first_line = (str(error).strip().splitlines() or [""])[0]
        if out_of_memory(error):
            status, reason, code = RunStatus.FAILED, f"out of memory: {first_line}", EXIT_FAILED
        else:
            status, reason, code = (
                RunStatus.FAILED,
                f"{type(error).__name__}: {first_line}",
                EXIT_FAILED,
            )
    record = run.record(status, reason, evaluation, timings)
    log(summary(record))
    try:
        write_outputs(config, record, run.progress.curve, log)
    except Exception as error:  # the record cannot be stored: say so, keep the exit code honest
        print(
            f"could not write results to RESULT_URI={config.RESULT_URI!r}: {error}", file=sys.stderr
        )
        return code or EXIT_FAILED
    if code:
        print(f"{status}: {reason}", file=sys.stderr)
    return code


def raw_settings(environ: Mapping[str, str], argv: list[str] | None) -> dict[str, str]:
    """The variables as given, flags over the environment, before any of them is parsed."""
    raw = {name: environ[name] for name in VARIABLES if name in environ}
    if argv:
        parsed = vars(build_parser().parse_args(argv))
        raw.update({name: value for name, value in parsed.items() if value is not None})
    return raw


def record_rejected(reason: str, raw: dict[str, str]) -> None:
    """A rejected configuration still ends in a record (the run contract), when RESULT_URI
    itself is usable: identity passed through, status `failed`, the reason, nothing measured."""
    result_uri = raw.get("RESULT_URI", "")
    if not result_uri:
        return

    def number(name: str, kind: type[int] | type[float]) -> int | float | None:
        with contextlib.suppress(ValueError):
            value = float(raw.get(name, VARIABLES[name].default))
            return int(value) if kind is int else value
        return None

    now = datetime.now(UTC).isoformat()
    record = RunRecord(
        study=raw.get("STUDY", ""),
        stage=raw.get("STAGE", ""),
        run_id=raw.get("RUN_ID", ""),
        condition_id=raw.get("CONDITION_ID", ""),
        coded_levels=coded_levels_of(raw.get("CODED_LEVELS", "{}")),
        budget_s=number("TIME_BUDGET", float),
        seed=number("RUN_SEED", int),
        pool=raw.get("POOL", ""),
        status=RunStatus.FAILED,
        reason=reason,
        wall_s=0.0,
        provenance=provenance(None, {}, {}, code_version=raw.get("CODE_VERSION") or None),
        started_at=now,
        finished_at=now,
    )
    try:
        Location(result_uri).put_bytes("result.json", record_bytes(record))
    except Exception as error:  # the reason is on stderr already; say why it is not stored
        print(f"could not write results to RESULT_URI={result_uri!r}: {error}", file=sys.stderr)


def out_of_memory(error: BaseException) -> bool:
    """CUDA raises OutOfMemoryError; the CPU allocator raises a RuntimeError saying so."""
    return isinstance(error, torch.OutOfMemoryError | MemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error)
    )


def summary(record: RunRecord) -> str:
    def fmt(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    memory = record.peak_memory_bytes
    rows = [
        ("status", record.status + (f" ({record.reason})" if record.reason else "")),
        ("val_bpb", fmt(record.val_bpb, ".6f")),
        ("train_loss", fmt(record.train_loss, ".4f")),
        ("steps", str(record.steps)),
        ("tokens", f"{record.tokens:,}"),
        ("parameters", fmt(record.parameters, ",")),
        ("training_s", fmt(record.training_s, ".1f")),
        ("warmup_s", fmt(record.warmup_s, ".1f")),
        ("eval_tokens", fmt(record.eval_tokens, ",")),
        ("eval_s", fmt(record.eval_s, ".1f")),
        ("wall_s", fmt(record.wall_s, ".1f")),
        ("tokens_per_s", fmt(record.tokens_per_s, ",.0f")),
        ("mfu_percent", fmt(record.mfu * 100 if record.mfu is not None else None, ".2f")),
        ("peak_memory_mb", fmt(memory / 2**20 if memory else None, ".1f")),
        ("resumed_from", str(record.resumed_from.step) if record.resumed_from else "-"),
    ]
    return "---\n" + "\n".join(f"{name + ':':18}{value}" for name, value in rows)
