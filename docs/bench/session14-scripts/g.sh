# Session 14, call G (diagnostic): does the bf16 attention output change cuBLASLt's pick for the o
# projection at batch 64? The tuning log's plans and ncu's duration of each matmul kernel with
# KVRUN_ATTN_BF16=0 and 1 (main after the skinny GEMM's revert). Fixtures tiny-qwen2.
set -uo pipefail
exec > >(tee ${OUT:-.}/session14-g.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
for a in 0 1; do
  echo "== KVRUN_ATTN_BF16=$a plans"
  KVRUN_ATTN_BF16=$a KVRUN_CUDA_LT_TUNE_LOG=1 $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 8 2>&1 | grep 'cuBLASLt plan m 64' | cut -c1-400
done
prof() {
  local label=$1; shift
  env "$@" timeout 150 ncu --clock-control none --graph-profiling node --kernel-name regex:'nvjet|gemm|Kernel|f32_to_bf16' --launch-skip 200 --launch-count 15 \
    --metrics gpu__time_duration.sum,launch__grid_size --csv --page raw --log-file /tmp/ncu.csv \
    $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 8 > /tmp/ncu.out 2>&1
  echo "== ncu $label rc=$?"; python3 - <<'PY'
import csv
rows=[r for r in csv.reader(open('/tmp/ncu.csv')) if r]
hdr=None
for r in rows:
    if 'Kernel Name' in r and hdr is None: hdr=r; continue
    if hdr and len(r)==len(hdr):
        d=dict(zip(hdr,r))
        try: t=float(d['gpu__time_duration.sum'].replace(',',''))
        except ValueError: continue
        print(f"{d['Kernel Name'][:70]:70s} grid {d['launch__grid_size']:>6s} time {t:10.1f}")
PY
}
prof attn_bf16=0 KVRUN_ATTN_BF16=0
prof attn_bf16=1 KVRUN_ATTN_BF16=1
date -u
