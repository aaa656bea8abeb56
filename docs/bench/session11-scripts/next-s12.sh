# Prepared in session 11: both prepared experiments from one build, one device call. Branch next-s12
# = main + naive-decode-early + gptq-g1-ks (they touch different plugins). Steps, here:
#   git checkout main && scripts/gpu-pack.sh tiny-qwen2 && mkdir -p .carry/old &&
#     cp build-cuda/plugins/attention_naive/kvrun_attention_naive.so .carry/old/
#   git checkout next-s12 && scripts/gpu-pack.sh tiny-qwen2 && git rev-parse HEAD > .carry/commit &&
#     cp docs/bench/session11-scripts/next-*.sh .carry/
# then: scripts/gpu-run.sh bash .carry/next-s12.sh (carry .carry and .fixtures); ~5 minutes.
set -uo pipefail
bash .carry/next-early-epilogue.sh
bash .carry/next-gptq-ks.sh
