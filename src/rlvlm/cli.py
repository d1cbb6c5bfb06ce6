"""The ``rlvlm`` command."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import NoReturn

from PIL import Image

from rlvlm.games import CARD_GAMES, GAMES

EPILOG = "Bad input ends with one error line and exit code 2."
#: Episodes ``rlvlm eval --replays`` records.
REPLAY_EPISODES = 8
CONFIG_HELP = (
    "a YAML file or a shipped config (tiny/numberline, paper/blackjack ...); "
    "default: the game's tiny config for a preset or a checkpoint trained from one, "
    "else its paper config"
)
OVERRIDES_HELP = "config overrides such as ppo.lr=3e-4 sft.epochs=2"


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer of 0 or more, got {text!r}")
    return int(text)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability from 0 to 1, got {text!r}")
    return value


def _image_size(text: str) -> int:
    value = _positive(text)
    if value < 32:
        raise argparse.ArgumentTypeError(f"expected an image size of at least 32, got {value}")
    return value


def _games_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--render", metavar="DIR", help="also write a picture of each game")
    parser.add_argument("--image-size", type=_image_size, default=300)


def cmd_games(args: argparse.Namespace) -> int:
    for game in GAMES.values():
        needs = f"  (needs rlvlm[{game.extra}])" if game.extra else ""
        try:
            env = game.make(image_size=args.image_size)
        except ImportError:
            print(f"{game.name:<12}{game.env_id:<22}{'':>11}  {game.summary}{needs}, not installed")
            continue
        fixed = env.unwrapped.task.action_names
        actions = f"{len(fixed):>3} actions" if fixed else "  commands"
        print(f"{game.name:<12}{game.env_id:<22}{actions}  {game.summary}{needs}")
        if args.render:
            path = Path(args.render) / f"{game.name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_sample_picture(env)).save(path)
        env.close()
    if args.render:
        print(f"pictures written to {args.render}/")
    return 0


def _sample_picture(env):
    """A picture from early in a seeded episode, after one move of the expert."""
    observation, _ = env.reset(seed=0)
    game = env.unwrapped
    after, _, terminated, truncated, _ = env.step(game.task.oracle_action(game.view()))
    return observation if terminated or truncated else after


def _history_argument(parser: argparse.ArgumentParser, default: int | None = 0) -> None:
    """``--history K``; ``default`` None: as the checkpoint was trained, else 0."""
    told = "0, the paper's" if default == 0 else "as the checkpoint was trained, else 0"
    parser.add_argument(
        "--history",
        metavar="K",
        type=_non_negative,
        default=default,
        help=f"prompts recall the episode's last K steps (default {told})",
    )


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--game", required=True, choices=list(GAMES))
    parser.add_argument(
        "--policy",
        required=True,
        help="oracle, random, a model preset (tiny-llava ...) or a checkpoint",
    )
    parser.add_argument("--episodes", type=_positive, default=200)
    parser.add_argument(
        "--split",
        choices=["valid_unseen", "valid_seen"],
        help="alfworld: the generated games' split (default: valid_unseen, unseen rooms)",
    )
    parser.add_argument(
        "--seed",
        type=_non_negative,
        default=0,
        help="which held-out set of deals (the same for every policy)",
    )
    parser.add_argument("--out", metavar="FILE", help="write the result as JSON")
    parser.add_argument(
        "--batch-size", type=_positive, default=16, help="episodes played side by side"
    )
    parser.add_argument(
        "--on-invalid",
        choices=["random", "noop"],
        default="random",
        help="what an unparsable reply does",
    )
    parser.add_argument(
        "--cot",
        action=argparse.BooleanOptionalAction,
        help="prompt for thoughts and the action, or (--no-cot) the action only (default: as "
        "the checkpoint was trained, else with thoughts)",
    )
    _history_argument(parser, default=None)
    parser.add_argument(
        "--image-size", type=_image_size, help="picture size (default: the model's own, else 300)"
    )
    parser.add_argument("--temperature", type=float, default=0.2, help="model sampling")
    parser.add_argument("--max-new-tokens", type=_positive, default=256, help="model replies")
    parser.add_argument("--device", default="cpu", help="model device, e.g. cuda")
    parser.add_argument(
        "--compare-paper", action="store_true", help="print the paper's figures for the game"
    )
    parser.add_argument(
        "--replays",
        metavar="DIR",
        help=f"save the first {REPLAY_EPISODES} episodes turn by turn (pictures, replies)",
    )
    api = parser.add_argument_group("api:<model> policies (an OpenAI-compatible endpoint)")
    api.add_argument("--api-base", metavar="URL", help="default: $OPENAI_BASE_URL, else OpenAI")
    api.add_argument("--api-key", metavar="KEY", help="default: $OPENAI_API_KEY")
    api.add_argument(
        "--api-timeout", metavar="S", type=float, default=60.0, help="seconds per attempt"
    )
    api.add_argument(
        "--api-retries", metavar="N", type=_non_negative, default=4, help="on 429, 5xx, time-outs"
    )
    api.add_argument(
        "--api-concurrency", metavar="N", type=_positive, default=8, help="requests at once"
    )


def cmd_eval(args: argparse.Namespace) -> int:
    if args.split and args.game != "alfworld":
        raise _UsageError("argument --split: only alfworld has splits")
    if args.out and Path(args.out).is_dir():
        raise _UsageError(f"argument --out: {args.out} is a directory; give a file name")
    for flag, directory in (
        ("--out", args.out and Path(args.out).parent),
        ("--replays", args.replays),
    ):
        if directory:  # before the model loads and the episodes play
            _check_writable(Path(directory), flag)
    from rlvlm.evaluation.policies import check_policy

    try:
        check_policy(args.policy)
    except ValueError as error:
        raise _UsageError(f"argument --policy: {error}") from None

    import torch

    from rlvlm.evaluation import ApiError, make_policy, run_episodes, save_replays, summarize
    from rlvlm.evaluation.paper import comparison_table
    from rlvlm.io import write_json

    _quiet_transformers()
    torch.manual_seed(args.seed)
    try:
        policy = make_policy(
            args.policy,
            seed=args.seed,
            temperature=args.temperature,
            max_new_tokens=args.max_new_tokens,
            device=args.device,
            api=_api_settings(args),
        )
    except ValueError as error:
        raise _UsageError(f"argument --policy: {error}") from None
    image_size = args.image_size or policy.image_size or 300
    trained = getattr(policy, "prompt", None) or {}  # how a checkpoint was trained to be asked
    cot = trained.get("cot", True) if args.cot is None else args.cot
    history = trained.get("history", 0) if args.history is None else args.history
    if trained:
        print(
            f"asking with cot={cot}, history={history} (trained with cot={trained['cot']}, "
            f"history={trained['history']})"
        )
    try:
        episodes = run_episodes(
            args.game,
            policy,
            args.episodes,
            args.seed,
            batch_size=args.batch_size,
            on_invalid=args.on_invalid,
            cot=cot,
            history=history,
            env_kwargs={"image_size": image_size} | ({"split": args.split} if args.split else {}),
            progress=True,
            record=REPLAY_EPISODES if args.replays else 0,
        )
    except ApiError as error:
        raise _UsageError(f"argument --policy: {error}") from None
    except ValueError as error:
        from rlvlm.models.policy import ContextTooLong  # loaded already if a model played

        if not isinstance(error, ContextTooLong):
            raise
        raise _UsageError(f"argument --policy: {error}") from None
    result = summarize(episodes, args.game, policy.name) | {"cot": cot, "history": history}
    usage = getattr(policy, "usage", None)  # what an API policy's endpoint reported
    if usage is not None:
        result["usage"] = usage
    _print_result(result)
    if usage and usage["failed_requests"] + usage["unusable_replies"]:
        print(
            f"{usage['failed_requests']} of {usage['requests']} requests failed and "
            f"{usage['unusable_replies']} replies were unusable (format errors); last error: "
            f"{usage['last_error']}",
            file=sys.stderr,
        )
    if args.compare_paper:
        print(comparison_table(result))
    if args.replays:
        try:
            save_replays(episodes, args.replays, game=args.game, policy=policy.name)
        except OSError as error:
            raise _UsageError(f"argument --replays: cannot write {args.replays}: {error}") from None
        print(
            f"replays of {min(REPLAY_EPISODES, len(episodes))} episodes written to {args.replays}/"
        )
    if args.out:
        try:
            print(f"result written to {write_json(args.out, result)}")
        except OSError as error:
            raise _UsageError(f"argument --out: cannot write {args.out}: {error}") from None
    return 0


def _check_writable(directory: Path, flag: str) -> None:
    """An output directory that cannot be made or written to is found before any work."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _UsageError(f"argument {flag}: cannot write {directory}: {error}") from None
    if not os.access(directory, os.W_OK):
        raise _UsageError(f"argument {flag}: cannot write {directory}: permission denied")


def _print_result(result: dict) -> None:
    """A header line and a row, then a row per task type (ALFWorld); fixed widths, so rows
    of several runs line up, widened where a name (a run's, a task type's) is longer."""
    rows = [(result["game"], result["policy"], result)]
    rows += [(f"  {task}", "", figures) for task, figures in result.get("per_task", {}).items()]
    first = max(11, *(len(label) + 1 for label, _, _ in rows))
    second = max(12, len(result["policy"]) + 1)
    for number, (game, policy, figures) in enumerate(rows):
        low, high = figures["success_ci95"]
        columns = [
            ("game", first, game),
            ("policy", second, policy),
            ("episodes", 9, str(figures["episodes"])),
            ("success", 8, f"{figures['success_rate']:.1%}"),
            ("95% CI", 17, f"[{low:.1%}, {high:.1%}]"),
            ("return", 14, f"{figures['mean_return']:.2f} ± {figures['std_return']:.2f}"),
            ("length", 7, f"{figures['mean_length']:.2f}"),
            ("format errors", 14, f"{figures['format_error_rate']:.1%}"),
            ("invalid actions", 15, f"{figures['invalid_action_rate']:.1%}"),
            ("true thoughts", 13, _percent(figures.get("thought_accuracy"))),
        ]
        for row in (0, 2) if number == 0 else (2,):
            print(" ".join(column[row].ljust(column[1]) for column in columns).rstrip())


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def _api_settings(args: argparse.Namespace):
    """Settings for an ``api:<model>`` policy: the flags, else the OpenAI variables."""
    from rlvlm.evaluation import ApiSettings

    if not args.policy.startswith("api:"):
        return None
    try:
        return ApiSettings.from_environment(
            args.api_base,
            args.api_key,
            timeout=args.api_timeout,
            retries=args.api_retries,
            concurrency=args.api_concurrency,
        )
    except ValueError as error:
        raise _UsageError(str(error)) from None


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--game", required=True, choices=list(GAMES))
    parser.add_argument("--episodes", metavar="N", type=_positive, required=True)
    parser.add_argument(
        "--out", metavar="DIR", required=True, help="where data.jsonl and images go"
    )
    parser.add_argument(
        "--epsilon",
        metavar="E",
        type=_probability,
        default=0.0,
        help="chance that a step takes a random legal action instead of the expert's",
    )
    parser.add_argument(
        "--seed",
        metavar="S",
        type=_non_negative,
        default=0,
        help="which training deals (never held-out ones)",
    )
    parser.add_argument(
        "--image-size",
        metavar="PX",
        type=_image_size,
        help="picture size (default: 84, the default tiny preset's; give your model's)",
    )
    parser.add_argument("--no-cot", action="store_true", help="replies name the action only")
    _history_argument(parser)


def cmd_data(args: argparse.Namespace) -> int:
    from rlvlm.sft.data import write_demonstrations

    image_size = args.image_size
    if image_size is None:  # imported here: it loads torch, which `rlvlm games` need not wait for
        from rlvlm.models import DEFAULT_PRESET, PRESETS

        image_size = PRESETS[DEFAULT_PRESET].image_size
    try:
        summary = write_demonstrations(
            args.game,
            args.episodes,
            args.out,
            epsilon=args.epsilon,
            seed=args.seed,
            image_size=image_size,
            cot=not args.no_cot,
            history=args.history,
            progress=True,
        )
    except ValueError as error:  # what argparse cannot check, e.g. a caller's own image size
        raise _UsageError(str(error)) from None
    except OSError as error:
        raise _UsageError(f"argument --out: cannot write {args.out}: {error}") from None
    print(
        f"{summary.steps} steps of {summary.episodes} {args.game} episodes "
        f"(expert success {summary.success_rate:.1%}) written to {summary.path}"
    )
    return 0


def _config(args: argparse.Namespace, given: dict[str, str | None]):
    """The config a train or sft command runs: a file or shipped name, else the game's tiny
    config for a preset or a checkpoint trained from one, its paper config for any other
    model; the options given (``given``, config key to value) and the overrides on top."""
    from rlvlm.config import default_config_name, load_config

    source = args.config or default_config_name(args.game, args.model)
    fixed = [f"{key}={value}" for key, value in given.items() if value]
    try:
        return load_config(source, [*fixed, *args.overrides])
    except ValueError as error:
        raise _UsageError(str(error)) from None


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--game", choices=list(GAMES))
    parser.add_argument("--model", help="a tiny preset, a checkpoint directory or a hub id")
    parser.add_argument("--config", help=CONFIG_HELP)
    parser.add_argument("--out", metavar="DIR", help="the parent of the run directory (runs)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=OVERRIDES_HELP)


def cmd_train(args: argparse.Namespace) -> int:
    from rlvlm.layout import new_run_dir, resume_config

    if args.resume:
        if args.config or args.game or args.model:
            raise _UsageError(
                "--resume continues a run with its own config; give only "
                "key=value overrides beside it"
            )
        run_dir = Path(args.resume)
        try:
            config = resume_config(run_dir, args.overrides)
        except ValueError as error:
            raise _UsageError(f"argument --resume: {error}") from None
    else:
        config = _config(args, {"game": args.game, "model.name": args.model, "out": args.out})
        run_dir = new_run_dir(config)
    # The config holds (checked without torch, so at once); now what it names, the
    # demonstrations first (that they are there and made for this run: no torch either).
    from rlvlm.sft.data import check_written_for, load_demonstrations

    if config.sft.data:
        try:
            load_demonstrations(config.sft.data, limit=1)
            check_written_for(config.sft.data, config)
        except ValueError as error:
            raise _UsageError(f"sft.data: {error}") from None
    from accelerate import Accelerator

    from rlvlm import train
    from rlvlm.rl.metrics import check_trackers
    from rlvlm.rl.trainer import TrainingDiverged

    _quiet_transformers()
    try:
        check_trackers(config.log_with)
    except ValueError as error:
        raise _UsageError(str(error)) from None
    if not args.resume:
        try:  # before the run directory exists, so that a bad name leaves nothing behind
            train.check_starting_model(config)
        except ValueError as error:
            raise _UsageError(f"model.name: {error}") from None
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _UsageError(f"cannot make the run directory {run_dir}: {error}") from None
    accelerator = Accelerator(cpu=args.cpu or None)
    if accelerator.is_main_process:
        print(f"run directory: {run_dir}")
    try:
        result = train.run(config, run_dir, accelerator=accelerator, progress=True)
    except TrainingDiverged as error:
        print(f"rlvlm train: {error}", file=sys.stderr)
        return 1
    except ValueError as error:  # a model, checkpoint or data the run cannot use
        raise _UsageError(str(error)) from None
    if not accelerator.is_main_process:
        return 0
    if "stopped_at_update" in result:
        print(
            f"stopped after update {result['stopped_at_update']}; continue with: "
            f"rlvlm train --resume {run_dir}"
        )
        return 130
    _print_result(result)
    sft = result.get("sft_success_rate")
    gain = ""
    if sft is not None:  # 0.0 is a result too
        gain = f" (SFT {sft:.1%}: {100 * (result['success_rate'] - sft):+.1f} points)"
    print(
        f"final success {result['success_rate']:.1%}{gain} in {result['wall_seconds']:.0f} s; "
        f"everything is in {run_dir}"
    )
    return 0


def _sft_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--game", required=True, choices=list(GAMES))
    parser.add_argument("--data", metavar="DIR", required=True, help="from rlvlm data")
    parser.add_argument(
        "--model", help="a tiny preset, a checkpoint or a hub id (default: the config's)"
    )
    parser.add_argument("--out", metavar="DIR", required=True, help="where the checkpoint goes")
    parser.add_argument("--config", help=CONFIG_HELP)
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=OVERRIDES_HELP)


def cmd_sft(args: argparse.Namespace) -> int:
    config = _config(args, {"game": args.game, "model.name": args.model})
    from rlvlm.sft.data import check_written_for, load_demonstrations

    try:  # every input, before the minutes of a tiny preset's vision stage; data first,
        check_written_for(args.data, config)  # since that needs no torch
        demonstrations = load_demonstrations(args.data)
    except ValueError as error:
        raise _UsageError(str(error)) from None
    from accelerate import Accelerator

    from rlvlm import train

    _quiet_transformers()
    try:
        train.check_starting_model(config)
    except ValueError as error:
        raise _UsageError(str(error)) from None
    accelerator = Accelerator(cpu=args.cpu or None)
    try:
        start = train.starting_model(config, progress=True)
        report = train.run_sft(config, start, demonstrations, Path(args.out), accelerator)
    except ValueError as error:
        raise _UsageError(str(error)) from None
    if accelerator.is_main_process:
        print(
            f"SFT on {report['demonstrations']} demonstrations, {report['steps']} steps, "
            f"final loss {report['loss']:.4f}: checkpoint in {args.out}"
        )
    return 0


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="where index.html and its pictures go (default: RUN_DIR/report for one run, "
        "comparison/ beside the first run for several)",
    )


def cmd_report(args: argparse.Namespace) -> int:
    from rlvlm.report import write_report

    try:
        page = write_report(args.runs, args.out)
    except ValueError as error:
        raise _UsageError(str(error)) from None
    except OSError as error:
        raise _UsageError(f"cannot write the report: {error}") from None
    what = "report" if len(args.runs) == 1 else f"comparison of {len(args.runs)} runs"
    print(f"{what} written to {page}")
    return 0


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["envs", "rollout", "train", "alfworld", "scale"])
    parser.add_argument("--seconds", type=float, default=2.0, help="envs: per measurement")
    parser.add_argument(
        "--model",
        help="rollout, train: the preset or checkpoint to time "
        "(default: the default preset; train: the config's model)",
    )
    parser.add_argument(
        "--envs", type=_positive, default=8, help="rollout: environments; alfworld: episodes"
    )
    parser.add_argument(
        "--config",
        help="train: the config of the update (default: the main "
        "job's, tiny/numberline); scale: the paper config whose settings it "
        "takes (default: paper/numberline)",
    )
    parser.add_argument(
        "--arch",
        type=_architecture,
        help="scale: a real checkpoint's architecture, random weights (llava-v1.6-mistral-7b, "
        "qwen2.5-vl-3b, qwen2.5-vl-7b)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="scale: append the figures to FILE as one JSON line",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="train, scale: config overrides"
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from rlvlm import bench

    if args.what == "envs":
        bench.bench_envs(seconds=args.seconds)
    elif args.what == "alfworld":
        try:
            bench.bench_alfworld(episodes=args.envs)
        except ImportError as error:
            raise _UsageError(str(error)) from None
    elif args.what == "train":
        _quiet_transformers()
        try:
            bench.bench_train(
                model=args.model,
                config_name=args.config or "tiny/numberline",
                overrides=args.overrides,
            )
        except ValueError as error:
            raise _UsageError(str(error)) from None
    elif args.what == "scale":
        if args.arch is None:
            raise _UsageError("bench scale needs --arch")
        _quiet_transformers()
        try:
            bench.bench_scale(
                args.arch,
                config_name=args.config or "paper/numberline",
                overrides=args.overrides,
                json_path=args.json,
            )
        except ValueError as error:
            raise _UsageError(str(error)) from None
    else:
        _quiet_transformers()
        bench.bench_rollout(preset=args.model, envs=args.envs)
    return 0


def _experiment_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="a spec file or a shipped spec (paper/table2 ...)")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default="experiments",
        help="where the experiment's folder goes (default: experiments)",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="cells run side by side, the cores split between them",
    )
    parser.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="ray: cells as tasks on the cluster RAY_ADDRESS names",
    )
    parser.add_argument(
        "--only",
        metavar="AXIS=VALUE",
        action="append",
        default=[],
        help="run only the cells with this value of an axis (again for more values or axes);"
        " the table still shows every cell",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--dry-run",
        action="store_true",
        help="list the cells and an estimate of the time; run nothing",
    )
    what.add_argument(
        "--table",
        action="store_true",
        help="write results.json, results.md, curves.png and thoughts.png of what has run",
    )


def cmd_experiment(args: argparse.Namespace) -> int:
    from rlvlm import experiment as grid

    try:
        spec = grid.load_experiment(args.spec)
        cells = spec.cells(args.out)
    except ValueError as error:
        raise _UsageError(str(error)) from None
    try:
        chosen = spec.select(cells, args.only)
    except ValueError as error:
        raise _UsageError(f"argument --only: {error}") from None
    folder = Path(args.out) / spec.name
    try:
        if args.dry_run:
            return _dry_run(spec, chosen, args.workers)
        if args.table:
            return _table(spec, cells, folder)
    except ValueError as error:  # a cell recorded with other settings, or a bad results.json
        raise _UsageError(str(error)) from None
    if args.backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise _UsageError('--backend ray needs Ray: pip install "rlvlm[ray]"') from None
    from rlvlm.models.policy import check_loadable

    try:
        for model in sorted({cell.config.model.name for cell in chosen}):
            check_loadable(model)
        failed = grid.run_cells(spec, chosen, workers=args.workers, backend=args.backend)
    except ValueError as error:
        raise _UsageError(str(error)) from None
    except OSError as error:  # an experiment folder that cannot be written
        raise _UsageError(f"cannot write in {folder}: {error}") from None
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to continue {folder}", file=sys.stderr)
        return 130
    grid.write_results(spec, cells, folder)
    print(f"results in {folder}/results.md; a cell's run: rlvlm report {folder}/<cell>")
    if failed:
        print(
            f"{len(failed)} cells failed: {', '.join(cell.name for cell in failed)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _dry_run(spec, cells, workers: int) -> int:
    from rlvlm.experiment import estimate_seconds, sft_stage, statuses

    sizes = [len(values) for values in spec.axes.values()]
    total = math.prod(sizes)
    count = f"{len(cells)} of its {total}" if len(cells) < total else str(total)  # --only
    print(f"{spec.name}: {count} cells ({' x '.join(map(str, sizes))} of {', '.join(spec.axes)})")
    print(f"{'cell':<40}{'status':<9}{'estimate':>9}")
    left = 0.0
    state_of = statuses(cells)
    stages: set[str] = set()  # SFT stages made by an earlier cell: later ones borrow them
    for cell in cells:
        state = state_of[cell.name]
        stage = sft_stage(cell.config)
        seconds = estimate_seconds(cell.config, sft=stage not in stages)
        stages.add(stage)
        left += seconds if state != "done" else 0.0
        print(f"{cell.name:<40}{state:<9}{seconds / 60:>8.0f}m")
    print(
        f"about {left / 3600:.1f} h of work left on this machine's 2 cores "
        f"(rough: the main job's costs), {workers} cell(s) at a time sharing them"
    )
    return 0


def _table(spec, cells, folder: Path) -> int:
    from rlvlm import experiment as grid

    try:
        results = grid.write_results(spec, cells, folder)
    except OSError as error:
        raise _UsageError(f"cannot write the results in {folder}: {error}") from None
    print(grid.markdown(results), end="")
    files = [*sorted(folder.glob("results.*")), folder / "curves.png", folder / "thoughts.png"]
    written = [file.name for file in files if file.is_file()]
    print(f"written to {folder}/: {', '.join(written)}")
    return 0


def _alfworld_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["generate"])
    parser.add_argument("--out", metavar="DIR", required=True, help="where the suite goes")
    parser.add_argument("--games", metavar="N", type=_positive, required=True)
    parser.add_argument("--split", choices=["train", "valid_seen", "valid_unseen"], default="train")
    parser.add_argument("--seed", metavar="S", type=_non_negative, default=0)
    parser.add_argument(
        "--max-steps",
        type=_positive,
        default=50,
        help="the expert must win each game within this many steps",
    )


def cmd_alfworld(args: argparse.Namespace) -> int:
    from rlvlm.games.alfworld.generate import write_suite

    try:
        paths = write_suite(
            args.out,
            args.games,
            args.split,
            seed=args.seed,
            max_steps=args.max_steps,
            progress=True,
        )
    except ImportError as error:
        raise _UsageError(str(error)) from None
    except OSError as error:
        raise _UsageError(f"argument --out: cannot write {args.out}: {error}") from None
    print(
        f"{len(paths)} {args.split} games, each won by the expert within {args.max_steps} "
        f"steps, written to {Path(args.out) / 'json_2.1.1' / args.split}; play them with "
        f"ALFWORLD_DATA={args.out}"
    )
    return 0


def _baseline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["cnn"], help="cnn: SB3 PPO on the pictures")
    parser.add_argument("--game", choices=CARD_GAMES, required=True)
    parser.add_argument("--seed", type=_non_negative, default=0)
    parser.add_argument(
        "--steps",
        type=_positive,
        help="environment steps (default: those of the game's tiny config's PPO stage)",
    )
    parser.add_argument(
        "--envs", type=_positive, help="parallel environments (default: the tiny config's)"
    )
    parser.add_argument(
        "--out", type=Path, help="run directory (default: runs/cnn-<game>-seed<seed>)"
    )


def cmd_baseline(args: argparse.Namespace) -> int:
    from rlvlm.baselines.cnn import CnnSettings, train_cnn

    out = args.out or Path("runs") / f"cnn-{args.game}-seed{args.seed}"
    _check_writable(out, "--out")
    settings = CnnSettings(args.game, seed=args.seed, steps=args.steps, num_envs=args.envs)
    try:
        result = train_cnn(settings, out)
    except (ImportError, ValueError) as error:  # before any training
        raise _UsageError(str(error)) from None
    print(
        f"cnn {args.game} seed {args.seed}: held-out success {result['success_rate']:.1%} after "
        f"{result['env_steps']} environment steps (peak {result['peak_success_rate']:.1%} at "
        f"{result['peak_step']}), {result['train_seconds']:.0f} s; in {out}"
    )
    return 0


def _pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=_preset, default="tiny-llava", help="a tiny preset")
    parser.add_argument("--games", nargs="+", choices=CARD_GAMES, default=list(CARD_GAMES))
    parser.add_argument("--steps", type=_positive, help="training steps (default: 1000)")
    parser.add_argument("--seed", type=_non_negative, default=0)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from rlvlm.models.vision import cached_vision_checkpoint

    _quiet_transformers()
    budget = {"steps": args.steps} if args.steps else {}
    try:
        path, report = cached_vision_checkpoint(
            args.model, args.games, seed=args.seed, progress=True, **budget
        )
    except OSError as error:
        raise _UsageError(f"cannot write the vision cache (set RLVLM_CACHE): {error}") from None
    print(f"{'game':<12}{'labels read':>12}{'images fully read':>19}{'chance':>8}")
    for game, accuracy in report["accuracy"].items():
        print(
            f"{game:<12}{accuracy['labels']:>12.1%}{accuracy['images']:>19.1%}"
            f"{accuracy['chance']:>8.1%}"
        )
    print(
        f"vision-pretrained {args.model} in {path} (held-out images; trained "
        f"{report['train_seconds']:.0f} s)"
    )
    return 0


def _preset(text: str) -> str:
    from rlvlm.models import PRESETS

    if text not in PRESETS:
        raise argparse.ArgumentTypeError(
            f"unknown preset {text!r}; choose from {', '.join(PRESETS)}"
        )
    return text


def _architecture(text: str) -> str:
    from rlvlm.config import architecture_names

    if text not in (names := architecture_names()):
        raise argparse.ArgumentTypeError(
            f"unknown architecture {text!r}; choose from {', '.join(names)}"
        )
    return text


def _quiet_transformers() -> None:
    """The command's own progress bars and errors say enough; keep transformers' quiet."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


class _UsageError(Exception):
    """A mistake in the command line found after parsing."""


#: Every command: its help line, the function that adds its arguments and its handler, in
#: the order ``rlvlm --help`` lists them.
COMMANDS = {
    "games": ("list the games", _games_arguments, cmd_games),
    "eval": ("play held-out episodes with a policy", _eval_arguments, cmd_eval),
    "alfworld": ("ALFWorld games made offline", _alfworld_arguments, cmd_alfworld),
    "pretrain": (
        "teach a tiny preset's vision tower to read the games (cached)",
        _pretrain_arguments,
        cmd_pretrain,
    ),
    "data": ("write expert demonstrations for fine-tuning", _data_arguments, cmd_data),
    "train": (
        "vision pretraining, SFT, PPO and a final evaluation (default: the tiny NumberLine job)",
        _train_arguments,
        cmd_train,
    ),
    "sft": ("supervised fine-tuning on demonstrations", _sft_arguments, cmd_sft),
    "report": (
        "a static HTML report of a run, or a comparison of several runs",
        _report_arguments,
        cmd_report,
    ),
    "bench": ("throughput figures beside a baseline", _bench_arguments, cmd_bench),
    "baseline": (
        "the paper's CNN + RL row: PPO on the pictures",
        _baseline_arguments,
        cmd_baseline,
    ),
    "experiment": (
        "a grid of training runs (games x seeds x config keys), resumable",
        _experiment_arguments,
        cmd_experiment,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlvlm", description=__doc__.strip(), epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_line, add_arguments, handler) in COMMANDS.items():
        command = commands.add_parser(name, help=help_line)
        add_arguments(command)
        command.set_defaults(run=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except _UsageError as error:
        print(f"rlvlm {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
