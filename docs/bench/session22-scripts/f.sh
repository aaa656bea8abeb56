# Session 22, call F: gemv2_kernel as gemv1's shape — 8-warp blocks, 2 or 3 per SM (KVRUN_GPTQ_G2_BPS:
# grid = that many blocks per SM, each block an equal share of tiles, its warps equal chunk ranges),
# 3–6 stage rings — against gemv1.
set -uo pipefail
exec > >(tee ${OUT:-.}/session22-f.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
echo "suite W8 BPS3: $(KVRUN_GPTQ_G2_WARPS=8 KVRUN_GPTQ_G2_BPS=3 KVRUN_GPTQ_G2_STAGES=4 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|test cases" | head -5)"
row_header
KVRUN_GPTQ_G2=0 row "g1" -c $C/qwen7b-gptq-int8-naive.toml $B1
for bps in 2 3; do for st in 3 4 6; do for bk in 0 1; do
  KVRUN_GPTQ_G2_WARPS=8 KVRUN_GPTQ_G2_U=2 KVRUN_GPTQ_G2_BPS=$bps KVRUN_GPTQ_G2_STAGES=$st KVRUN_GPTQ_G2_BULK=$bk row "g2 W8 U2 bps$bps S$st bulk$bk" -c $C/qwen7b-gptq-int8-naive.toml $B1
done; done; done
KVRUN_GPTQ_G2_WARPS=16 KVRUN_GPTQ_G2_U=2 KVRUN_GPTQ_G2_BPS=2 KVRUN_GPTQ_G2_STAGES=2 row "g2 W16 U2 bps2 S2" -c $C/qwen7b-gptq-int8-naive.toml $B1
KVRUN_GPTQ_G2=0 row "g1" -c $C/qwen7b-gptq-int8-naive.toml $B1
date -u
