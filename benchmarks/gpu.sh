#!/usr/bin/env bash
# The GPU measurement, unattended: `bash benchmarks/gpu.sh [OUT_DIR]` from the repository's
# root on a machine with a CUDA GPU. It installs what it lacks (the project with DeepSpeed,
# into .venv-gpu), then measures, each step under a time limit so that the whole stops
# within 10 minutes:
#   1. `rlvlm bench scale` for the three real architectures (random weights, the paper's
#      LoRA, bf16 and gradient checkpointing): 8 environments x 4 steps with replies of up to
#      256 tokens, one epoch of minibatches of 1, 32 of them per optimiser step;
#   2. the same for the 3B architecture in two processes under DeepSpeed ZeRO-2 (on two GPUs;
#      skipped, and said so, on one);
#   3. the main job (`rlvlm train`, the tiny preset on NumberLine) on the GPU.
# Then it prints one table. Logs and the table go to OUT_DIR (default: bench-gpu/).
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-bench-gpu}")
mkdir -p "$out"
rows="$out/scale.jsonl"
: >"$rows"

if ! python3 -c "import rlvlm, deepspeed" 2>/dev/null; then
    test -x .venv-gpu/bin/python || python3 -m venv .venv-gpu
    .venv-gpu/bin/python -m pip install --quiet torch==2.13.0
    .venv-gpu/bin/python -m pip install --quiet -e ".[deepspeed]"
    export PATH="$PWD/.venv-gpu/bin:$PATH"
fi
gpus=$(python3 -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -lt 1 ]; then
    echo "no CUDA GPU here: run benchmarks/gpu.sh on a GPU machine" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"

cut=(ppo.steps_per_env=4 ppo.epochs=1 ppo.grad_accum=32)
for arch in qwen2.5-vl-3b qwen2.5-vl-7b llava-v1.6-mistral-7b; do
    echo "== bench scale --arch $arch"
    timeout 150 rlvlm bench scale --arch "$arch" --json "$rows" "${cut[@]}" 2>&1 |
        tee "$out/scale-$arch.log"
done

echo "== bench scale --arch qwen2.5-vl-3b, 2 processes, DeepSpeed ZeRO-2"
if [ "$gpus" -ge 2 ]; then
    timeout 150 accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml \
        --num_processes 2 -m rlvlm bench scale --arch qwen2.5-vl-3b --json "$rows" \
        "${cut[@]}" 2>&1 | tee "$out/scale-zero2.log"
else
    echo "skipped: one GPU here, ZeRO-2 needs two" | tee "$out/scale-zero2.log"
fi

echo "== the main job on the GPU"
rm -rf "$out/main"
timeout 200 rlvlm train --out "$out/main" name=main 2>&1 | tail -n 5 | tee "$out/main.log"

python3 - "$rows" "$out/main/main/eval.json" <<'PY' | tee "$out/table.md"
import json, sys
from pathlib import Path

print("| what | processes | parameters | trained | peak GPU memory | generation | PPO update | per minibatch |")
print("|---|---|---|---|---|---|---|---|")
for line in Path(sys.argv[1]).read_text().splitlines():
    r = json.loads(line)
    print(f"| {r['arch']} | {r['processes']} | {r['parameters'] / 1e9:.2f} B | "
          f"{r['trainable'] / 1e6:.0f} M | {r['peak_gib']:.1f} GiB | "
          f"{r['tokens_per_s']:.0f} tokens/s | {r['update_seconds']:.1f} s | "
          f"{r['minibatch_seconds']:.2f} s |")
main = Path(sys.argv[2])
if main.is_file():
    e = json.loads(main.read_text())
    print(f"\nmain job: SFT {e['sft_success_rate']:.1%}, PPO {e['success_rate']:.1%}, "
          f"{e['wall_seconds']:.0f} s")
else:
    print("\nmain job: did not finish within its 200 s")
PY
