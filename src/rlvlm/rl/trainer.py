"""The PPO trainer: rollout, advantages, clipped updates, logs and checkpoints, on accelerate.

One process is the same code path as many: each process steps its own environments and
collects its own rollout, gradients are averaged by the data-parallel wrapper, and the main
process evaluates, logs and writes checkpoints. The model stays in eval mode throughout, so
dropout never perturbs the ratio: the first epoch's first ratio is exactly 1.
"""

from __future__ import annotations

import math
import random
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from rlvlm.config import TrainConfig
from rlvlm.evaluation import ModelPolicy, run_episodes, save_replays, summarize
from rlvlm.evaluation.metrics import thought_accuracy
from rlvlm.layout import CHECKPOINTS_DIR
from rlvlm.models.policy import ScoringInputs, VLMPolicy
from rlvlm.models.training import prepare_training, trainable_parameters
from rlvlm.progress import progress_bar
from rlvlm.rl.advantages import normalize
from rlvlm.rl.buffer import Minibatch, RolloutBuffer
from rlvlm.rl.checkpoints import Checkpoints
from rlvlm.rl.loss import ppo_loss
from rlvlm.rl.metrics import MetricsLog
from rlvlm.rl.rollout import RolloutStats, collect, make_envs
from rlvlm.seeds import train_seeds


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN or infinite; the last good checkpoint is kept."""


class PPOTrainer:
    def __init__(
        self,
        config: TrainConfig,
        policy: VLMPolicy,
        run_dir: Path,
        accelerator: Accelerator | None = None,
        progress: bool = True,
        final_replays: Path | None = None,
    ):
        self.config, self.ppo = config, config.ppo
        #: The last update is always evaluated (recording replays in ``final_replays``) and
        #: its whole result kept here, so the run's final evaluation needs no second pass.
        self.final_replays = final_replays
        self.final_evaluation: dict[str, Any] | None = None
        self.accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.run_dir = Path(run_dir)
        self.progress = progress and self.accelerator.is_main_process
        self.policy = policy.to(self.accelerator.device)
        #: The KL penalty's reference is the policy as PPO found it: only the trained
        #: weights' starting values are kept (with LoRA, the adapters), swapped in to score.
        self._starting_weights = (
            [p.detach().clone() for p in trainable_parameters(policy)]
            if self.ppo.kl_coef > 0
            else None
        )
        self.optimizer = torch.optim.Adam(
            self._parameter_groups(), lr=self.ppo.lr, eps=self.ppo.adam_eps
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=self.ppo.updates, eta_min=self.ppo.lr_min
        )
        self.model, self.optimizer = prepare_training(
            self.accelerator,
            policy,
            self.optimizer,
            minibatch_size=self.ppo.minibatch_size,
            grad_accum=self.ppo.grad_accum,
            max_grad_norm=self.ppo.max_grad_norm,
        )
        self.accelerator.register_for_checkpointing(self.scheduler)
        self.checkpoints = Checkpoints(
            self.run_dir / CHECKPOINTS_DIR, config.keep_checkpoints, self.accelerator
        )
        self.log = MetricsLog(
            self.run_dir,
            enabled=self.accelerator.is_main_process,
            log_with=config.log_with,
            config=config.to_dict(),
        )
        self.update = 0
        self._stop_requested = False

    @property
    def uses_critic(self) -> bool:
        """GAE's advantages need the value head; the group estimators neither train nor use it."""
        return self.ppo.advantage == "gae"

    # ------------------------------------------------------------------ state

    @contextmanager
    def _at_starting_weights(self) -> Iterator[None]:
        """The policy with its trained weights swapped for their starting values (no copy:
        the tensors trade places, and trade back)."""
        parameters = trainable_parameters(self.policy)

        def swap() -> None:
            for parameter, other in zip(parameters, self._starting_weights, strict=True):
                parameter.data, other.data = other.data, parameter.data

        swap()
        try:
            yield
        finally:
            swap()

    def _parameter_groups(self) -> list[dict[str, Any]]:
        head = list(self.policy.value_head.parameters())  # a list: the order must not vary
        in_head = {id(p) for p in head}
        body = [p for p in trainable_parameters(self.policy) if id(p) not in in_head]
        value_lr = self.ppo.lr if self.ppo.value_lr is None else self.ppo.value_lr
        return [{"params": body}, {"params": head, "lr": value_lr}]

    def resume(self) -> bool:
        """Continue from the latest checkpoint, if there is one."""
        update = self.checkpoints.load_latest()
        if update is None:
            return False
        self.update = update
        self.log.truncate(self.update)
        return True

    def save(self) -> Path:
        return self.checkpoints.save(self.update, self.policy)

    # ------------------------------------------------------------------ the loop

    def train(self) -> None:
        ppo = self.ppo
        process = self.accelerator.process_index
        envs = make_envs(
            self.config.game,
            ppo.num_envs,
            image_size=self.policy.image_size,
            vector=ppo.vector,
            on_invalid=ppo.on_invalid,
            penalty=ppo.invalid_penalty,
            **self.config.prompt,
            group_size=ppo.group_size,
        )
        bar = progress_bar(
            total=ppo.updates,
            initial=self.update,
            desc="ppo",
            unit="update",
            enabled=self.progress,
        )
        warned = False  # of rollouts cut short, once a run
        try:
            with self._interruptible():
                while self.update < ppo.updates:
                    rng_at_start = _rng_state()
                    buffer = RolloutBuffer(ppo.steps_per_env, ppo.num_envs)
                    seeds = train_seeds(
                        self.config.seed, self.update, process, ppo.num_envs, ppo.group_size
                    )
                    self.policy.eval()
                    stats = collect(
                        self.policy,
                        envs,
                        buffer,
                        seeds,
                        thought_coef=ppo.thought_coef,
                        temperature=ppo.temperature,
                        top_p=ppo.top_p,
                        max_new_tokens=ppo.max_new_tokens,
                        should_stop=self._stopping,
                    )
                    if stats is None:  # interrupted before any weight changed: the
                        _set_rng_state(rng_at_start)  # resumed run collects this rollout again
                        self.save()
                        break
                    warning = stats.cut_short(ppo.num_envs, ppo.steps_per_env)
                    if warning and not warned and self.accelerator.is_main_process:
                        tqdm.write(warning)
                        warned = True
                    metrics = self._optimize(buffer, stats)
                    self.update += 1
                    self.scheduler.step()
                    if self.update == ppo.updates:
                        self.final_evaluation = self.evaluate(
                            replays=self.final_replays,
                            name=f"ppo ({self.run_dir.name})",
                            progress=self.progress,
                        )
                        metrics |= _eval_metrics(self.final_evaluation)
                    elif self._due(self.config.eval.every):
                        metrics |= _eval_metrics(self.evaluate())
                    self.log.write(self.update, metrics)
                    bar.set_postfix(_postfix(metrics), refresh=False)
                    bar.update()
                    if self._due(self.config.checkpoint_every) or self._stop_requested:
                        self.save()
                    if self._stop_requested:
                        break
                if self.update == ppo.updates and not self._stop_requested:
                    self.save()
        finally:
            bar.close()
            envs.close()
            self.log.close()

    def _due(self, every: int) -> bool:
        return every > 0 and self.update % every == 0

    def _optimize(self, buffer: RolloutBuffer, stats: RolloutStats) -> dict[str, float]:
        ppo = self.ppo
        start = time.perf_counter()
        rng = np.random.default_rng([self.config.seed, self.update, self.accelerator.process_index])
        orders = [rng.permutation(buffer.steps * buffer.num_envs) for _ in range(ppo.epochs)]
        inputs = self.policy.scoring_inputs(*buffer.transitions())
        self._rescore(buffer, inputs, orders[0])
        if self.uses_critic:
            buffer.compute_advantages(ppo.gamma, ppo.gae_lambda)
            if ppo.norm_adv:
                buffer.advantages = self._normalized(buffer.advantages)
        else:
            buffer.compute_group_advantages(
                ppo.group_size,
                step_level=ppo.advantage == "gigpo",
                gamma=ppo.gamma,
                step_weight=ppo.step_advantage_weight,
                scale=ppo.group_std,
            )
        sums: dict[str, float] = {}
        count = 0
        trainable = trainable_parameters(self.policy)
        for order in orders:
            # Every grad_accum minibatches make one optimiser step: accumulate() skips the
            # gradient exchange and the optimiser (and DeepSpeed's engine its step) between.
            for batch in buffer.minibatches(ppo.minibatch_size, order):
                with self.accelerator.accumulate(self.model):
                    parts = self._loss(inputs.take(batch.index), batch)
                    self._check_finite(parts["loss"], "loss")
                    self.accelerator.backward(parts["loss"])
                    if self.accelerator.sync_gradients:
                        norm = self.accelerator.clip_grad_norm_(trainable, ppo.max_grad_norm)
                        if norm is not None:  # None where DeepSpeed clips inside its engine
                            self._check_finite(norm, "gradient norm")
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                for key, value in parts.items():
                    sums[key] = sums.get(key, 0.0) + value.item() * len(batch.index)
                count += len(batch.index)
        train_seconds = time.perf_counter() - start
        episodes = len(stats.episode_returns)
        returns = np.asarray(stats.episode_returns)
        metrics = {f"losses/{key}": value / count for key, value in sums.items()}
        metrics |= {
            "charts/success_rate": (
                float(np.mean(stats.episode_successes)) if episodes else math.nan
            ),
            "charts/episode_return": float(returns.mean()) if episodes else math.nan,
            "charts/episode_length": (
                float(np.mean(stats.episode_lengths)) if episodes else math.nan
            ),
            "charts/episodes": episodes,
            "charts/format_error_rate": stats.format_errors / stats.steps,
            "charts/thought_logprob": stats.thought_logprob / stats.steps,
            "charts/action_logprob": stats.action_logprob / stats.steps,
            "charts/learning_rate": self.optimizer.param_groups[0]["lr"],
            "charts/SPS": stats.steps / stats.seconds,
            "charts/tokens_per_s": stats.reply_tokens / stats.seconds,
            "time/rollout_seconds": stats.seconds,
            "time/train_seconds": train_seconds,
        }
        if self.uses_critic:
            metrics["losses/explained_variance"] = _explained_variance(buffer)
        metrics |= _flat(thought_accuracy(stats.thought_checks), "charts/")
        return self._mean_over_processes(metrics)

    @torch.no_grad()
    def _rescore(self, buffer: RolloutBuffer, inputs: ScoringInputs, order: np.ndarray) -> None:
        """The old log-probs and values, as the training pass computes them at the rollout's
        weights, the KL reference's log-probs (at the starting weights), and the values of the
        cut episodes' last observations.

        Sampling with a KV cache and scoring whole sequences round differently under bf16
        (and differ by a few 1e-6 in float32), so the log-probs recorded while sampling would
        start the ratio off 1. Scored here in the first epoch's minibatches, the first
        minibatch's ratio is exactly 1.
        """
        policy, ppo = self.policy, self.ppo
        for start in range(0, len(order), ppo.minibatch_size):
            index = order[start : start + ppo.minibatch_size]
            batch = inputs.take(index)
            scores = policy.score_inputs(batch, temperature=ppo.temperature)
            steps, envs = np.divmod(index, buffer.num_envs)
            buffer.logprobs[steps, envs] = scores.logprob(ppo.thought_coef).float().cpu().numpy()
            buffer.values[steps, envs] = scores.values.float().cpu().numpy()
            if self._starting_weights is not None:
                with self._at_starting_weights():
                    start_scores = policy.score_inputs(batch, temperature=ppo.temperature)
                logprobs = start_scores.logprob(ppo.thought_coef).float().cpu().numpy()
                buffer.reference_logprobs[steps, envs] = logprobs
        cut = list(buffer.final_observations) if self.uses_critic else []
        for start in range(0, len(cut), buffer.num_envs):  # prompt-only passes, as wide as sampling
            chunk = cut[start : start + buffer.num_envs]
            images, prompts = zip(*(buffer.final_observations[key] for key in chunk), strict=True)
            values = policy.values(images, prompts).float().cpu().numpy()
            for (t, e), value in zip(chunk, values, strict=True):
                buffer.next_values[t, e] = value
        buffer.fill_next_values()

    def _loss(self, inputs: ScoringInputs, batch: Minibatch) -> dict[str, torch.Tensor]:
        ppo, device = self.ppo, self.accelerator.device
        scores = self.model(inputs, temperature=ppo.temperature)
        logprobs = scores.logprob(ppo.thought_coef)
        out = ppo_loss(
            logprobs,
            batch.old_logprobs.to(device),
            batch.advantages.to(device),
            scores.values,
            batch.old_values.to(device),
            batch.returns.to(device),
            clip_coef=ppo.clip_coef,
            vf_coef=ppo.vf_coef if self.uses_critic else 0.0,
            clip_vloss=ppo.clip_vloss,
            entropy=scores.entropy,
            ent_coef=ppo.ent_coef,
        )
        parts = {
            "loss": out.loss,
            "policy_loss": out.policy_loss,
            "value_loss": out.value_loss,
            "entropy": out.entropy,
            "approx_kl": out.approx_kl,
            "clipfrac": out.clipfrac,
        }
        if not self.uses_critic:
            del parts["value_loss"]
        if self._starting_weights is not None:
            log_ratio = batch.reference_logprobs.to(device) - logprobs
            kl = (log_ratio.exp() - log_ratio - 1).mean()  # k3: non-negative, unbiased
            parts["loss"] = parts["loss"] + ppo.kl_coef * kl
            parts["kl_reference"] = kl
        return parts

    def _check_finite(self, value: torch.Tensor, what: str) -> None:
        if not torch.isfinite(value).all():
            raise TrainingDiverged(
                f"the {what} became {float(value.detach())} in update {self.update + 1}; "
                f"stopped, and the last good checkpoint is kept in {self.checkpoints.root}"
            )

    def _normalized(self, advantages: np.ndarray) -> np.ndarray:
        """Zero mean and unit variance over every process's rollout (all the same size)."""
        local = torch.as_tensor(advantages, device=self.accelerator.device).flatten()
        everyone = self.accelerator.gather(local) if self.accelerator.num_processes > 1 else local
        start = self.accelerator.process_index * local.numel()
        mine = normalize(everyone)[start : start + local.numel()]
        return mine.reshape(advantages.shape).cpu().numpy().astype(np.float32)

    def _mean_over_processes(self, metrics: dict[str, float]) -> dict[str, float]:
        if self.accelerator.num_processes == 1:
            return metrics
        keys = sorted(metrics)
        local = torch.tensor([metrics[k] for k in keys], device=self.accelerator.device)
        total = self.accelerator.reduce(local, reduction="mean")
        return dict(zip(keys, total.tolist(), strict=True))

    # ------------------------------------------------------------------ evaluation

    def evaluate(
        self,
        episodes: int | None = None,
        replays: Path | None = None,
        name: str | None = None,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Success and the rest on the fixed held-out episodes, played by the main process
        with the config's evaluation settings."""
        result: dict[str, Any] = {}
        if self.accelerator.is_main_process:
            self.policy.eval()
            name = name or f"update {self.update}"
            result = evaluate_held_out(
                self.policy, self.config, episodes, name=name, replays=replays, progress=progress
            )
        self.accelerator.wait_for_everyone()
        return result

    # ------------------------------------------------------------------ Ctrl-C

    def _stopping(self) -> bool:
        return self._stop_requested

    @contextmanager
    def _interruptible(self):
        """The first Ctrl-C finishes the current update (or drops a rollout) and saves; a
        second one stops at once, keeping the last checkpoint on disk."""

        def handler(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            tqdm.write("stopping: saving a checkpoint (Ctrl-C again to stop without saving)")

        try:
            previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: leave the default handling
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def evaluate_held_out(
    policy: VLMPolicy,
    config: TrainConfig,
    episodes: int | None = None,
    name: str = "policy",
    progress: bool = False,
    replays: Path | None = None,
) -> dict[str, Any]:
    """The held-out evaluation of ``config``: its episodes, seed and sampling settings.
    With ``replays``, the first ``config.eval.replays`` episodes are saved there turn by turn."""
    ppo, settings = config.ppo, config.eval
    temperature = ppo.temperature if settings.temperature is None else settings.temperature
    player = ModelPolicy(policy, name, temperature=temperature, max_new_tokens=ppo.max_new_tokens)
    played = run_episodes(
        config.game,
        player,
        episodes or settings.episodes,
        settings.seed,
        batch_size=settings.batch_size,
        on_invalid=ppo.on_invalid,
        **config.prompt,
        env_kwargs={"image_size": policy.image_size},
        progress=progress,
        record=settings.replays if replays else 0,
    )
    if replays:
        save_replays(played, replays, game=config.game, policy=name)
    return summarize(played, config.game, name)


def _explained_variance(buffer: RolloutBuffer) -> float:
    returns, values = buffer.returns.ravel(), buffer.values.ravel()
    variance = returns.var()
    return float("nan") if variance == 0 else float(1 - (returns - values).var() / variance)


def _eval_metrics(result: dict[str, Any]) -> dict[str, float]:
    return _flat({k: v for k, v in result.items() if k != "per_task"}, "eval/")


def _flat(figures: dict[str, Any], prefix: str) -> dict[str, float]:
    """The scalars of ``figures`` as metrics, those of a nested dict under ``key/``:
    ``{"fact_accuracy": {"cards": 1.0}}`` gives ``prefix + "fact_accuracy/cards"``."""
    metrics = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            metrics |= _flat(value, f"{prefix}{key}/")
        elif _scalar(value):
            metrics[prefix + key] = value
    return metrics


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _postfix(metrics: dict[str, float]) -> dict[str, str]:
    shown = {
        "success": "charts/success_rate",
        "return": "charts/episode_return",
        "eval": "eval/success_rate",
        "kl": "losses/approx_kl",
    }
    return {
        label: f"{metrics[key]:.3g}"
        for label, key in shown.items()
        if key in metrics and not math.isnan(metrics[key])
    }


def _rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
