# Session 14, call D: the skinny GEMM with a vectorized split-K fix-up (call C's fix-up summed one
# column at a time: its last block's L2 round trips made a long tail). Fixtures tiny-qwen2. The
# skinny and matmul_fused cases of test_cuda_ops; bench rows A/B (KVRUN_CUDA_SKINNY=0 vs 1, and 1
# with KVRUN_CUDA_SKINNY_SPLITS forced); then ncu's duration of each matmul kernel of a few
# batch-64 decode steps, cuBLAS and skinny, to compare shape by shape.
set -uo pipefail
exec > >(tee ${OUT:-.}/session14-d.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
timeout 120 $b/test_cuda_ops -tc='*skinny*,*matmul_fused*' 2>&1 | tail -3
row() { local name=$1; shift; $k bench "$@" 2>&1 | awk -v n="$name" '/^ batch/{h=1;next} h&&NF>5{print n" | "$0}'; }
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B64="--batch 64 --prompt-tokens 32 --new-tokens 512"
KVRUN_CUDA_SKINNY=0 row "qwen-7b bf16 int8 naive skinny=0" -c $C/qwen7b-bf16-int8-naive.toml $B64
KVRUN_CUDA_SKINNY=1 row "qwen-7b bf16 int8 naive skinny=1" -c $C/qwen7b-bf16-int8-naive.toml $B64
for sp in 1 2 4; do
  KVRUN_CUDA_SKINNY=1 KVRUN_CUDA_SKINNY_SPLITS=$sp row "qwen-7b bf16 int8 naive skinny=1 splits=$sp" -c $C/qwen7b-bf16-int8-naive.toml $B64
done
prof() {  # $1 label, $2 kernel regex, rest: env
  local label=$1 re=$2; shift 2
  env "$@" timeout 150 ncu --clock-control none --graph-profiling node --kernel-name regex:"$re" --launch-skip 200 --launch-count 12 \
    --metrics gpu__time_duration.sum,launch__grid_size,dram__bytes_read.sum --csv --page raw \
    $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 8 > /tmp/ncu.csv 2>/tmp/ncu.err
  echo "== ncu $label rc=$?"; python3 - <<'PY'
import csv
rows=list(csv.reader(open('/tmp/ncu.csv')))
hdr=None
for r in rows:
    if 'Kernel Name' in r: hdr=r; continue
    if hdr and len(r)==len(hdr) and r[hdr.index('Kernel Name')] and r[0]!='':
        d=dict(zip(hdr,r))
        try:
            t=float(d['gpu__time_duration.sum']); by=float(d['dram__bytes_read.sum'])
        except ValueError: continue
        print(f"{d['Kernel Name'][:60]:60s} grid {d['launch__grid_size']:>6s} {t:9.2f} (unit per header) dram {by/1e6:8.2f} MB")
PY
  tail -3 /tmp/ncu.err
}
prof cublas 'nvjet|gemm|Kernel' KVRUN_CUDA_SKINNY=0
prof skinny 'skinny' KVRUN_CUDA_SKINNY=1
date -u
