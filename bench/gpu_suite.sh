#!/usr/bin/env bash
# Every GPU figure in one window: the cuda tests and each bench on `cuda`, merged into one JSON.
#
#     bash bench/gpu_suite.sh [OUT_DIR]        (default: $OUT when set, else ./gpu_suite_out)
#
# Runs from the repository root with the project installed. Each step has its own time limit and
# its own JSON (OUT_DIR/<step>.json); a failing step is recorded and the suite goes on. The last
# step writes OUT_DIR/gpu_suite.json: per step its exit code, seconds, report and stderr tail.
# Budget: about 8 minutes on an H100. Without a CUDA device it says so and exits 2.
set -u
out="${1:-${OUT:-gpu_suite_out}}"
mkdir -p "$out"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 2)" || {
    echo "gpu_suite: torch sees no CUDA device" >&2; exit 2; }

step() {  # step NAME LIMIT_S COMMAND...: run it, keep its stdout as NAME.json and its stderr
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    echo "gpu_suite: $name" >&2
    timeout "$limit" "$@" >"$out/$name.json" 2>"$out/$name.err"
    echo "$? $((SECONDS - start))" >"$out/$name.rc"
}

step cuda_tests 150 python -m pytest -q -m cuda -p no:cacheprovider --junitxml="$out/cuda_tests.xml"
step env_throughput 90 python bench/env_throughput.py --device cuda --accounts 4096,65536,262144,1048576 --seconds 2
step encoder_latency 60 python bench/encoder_latency.py --device cuda --batch-sizes 32,256 --seconds 2
step heads 60 python bench/heads.py --device cuda --symbols 143 --seconds 2
step iteration_143x8 120 python bench/scale.py --device cuda --symbols 143 --envs-per-symbol 8 --storage index
for amp in fp16 bf16 off; do
    step "update_$amp" 60 python bench/profile_update.py --device cuda --set "ppo.amp=$amp" --top 10
done
step train_throughput 90 python bench/train_throughput.py --device cuda --iterations 2

python - "$out" <<'PY'
import json, sys
from pathlib import Path

import torch

out = Path(sys.argv[1])
steps = {}
for rc_file in sorted(out.glob("*.rc"), key=lambda p: p.stat().st_mtime):
    name = rc_file.stem
    rc, seconds = (int(x) for x in rc_file.read_text().split())
    text = (out / f"{name}.json").read_text()
    try:
        report = json.loads(text)
    except ValueError:
        report = text[-4000:]  # the tests' summary, or whatever a failed bench printed
    steps[name] = {"rc": rc, "seconds": seconds, "report": report,
                   "stderr_tail": (out / f"{name}.err").read_text()[-2000:]}
suite = {"bench": "gpu_suite", "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
         "bf16_supported": torch.cuda.is_bf16_supported(), "steps": steps}
(out / "gpu_suite.json").write_text(json.dumps(suite, indent=2) + "\n")
print(json.dumps({name: {"rc": s["rc"], "seconds": s["seconds"]} for name, s in steps.items()}, indent=2))
PY
