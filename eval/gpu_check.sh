#!/usr/bin/env bash
# The GPU checks, in one run, on a CUDA machine with jaxsoc installed (pip install -e ".[gpu,dev]"):
#
#     bash eval/gpu_check.sh [OUTDIR]        # default gpu-check/; ~10 minutes
#
# 1. which devices JAX sees (a silent CPU fallback shows here first);
# 2. the gpu-marked tests (tests/test_gpu.py): they fail when JAX runs on the CPU;
# 3. env-steps/s of both presets at 4,096 / 65,536 / 262,144 envs, rewards only and with every
#    observation (eval/bench_env.py);
# 4. MAPPO's and HMARL-SOC's training env-steps/s at 4,096 envs on soc-v2, next to the raw env
#    (eval/bench_train.py).
# Each part's output goes to OUTDIR/<part>.txt as it runs; a failed part does not stop the others,
# and the script's exit status says whether any failed. docs/benchmarks.md "On a GPU" says where
# the figures go.
set -uo pipefail
out="${1:-gpu-check}"
# An earlier check's figures are kept: another OUTDIR, or remove them first (the other tools
# refuse to overwrite without --force).
if compgen -G "$out/*.txt" > /dev/null; then
    echo "eval/gpu_check.sh: error: $out already holds an earlier check's .txt files: give another OUTDIR" >&2
    exit 2
fi
mkdir -p "$out"
export PYTHONUNBUFFERED=1
failed=0
part() {  # part NAME COMMAND...: run COMMAND, its output to the terminal and OUTDIR/NAME.txt
    local name=$1; shift
    echo "== $name: $*" | tee "$out/$name.txt"
    "$@" 2>&1 | tee -a "$out/$name.txt" || { failed=1; echo "== $name FAILED" | tee -a "$out/$name.txt"; }
}
part devices python -c "import jax; print(jax.__version__, jax.default_backend(), jax.devices())"
part tests python -m pytest -m gpu -n 0 -q -p no:cacheprovider tests/test_gpu.py
part env python eval/bench_env.py --envs 4096 65536 262144 --repeats 3
part env_obs python eval/bench_env.py --envs 4096 65536 262144 --repeats 3 --with-obs
part train python eval/bench_train.py --cases mappo hmarl --envs 4096 --skip-rounds
exit $failed
