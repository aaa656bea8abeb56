# Session 21, call C: why gemm_tc_kernel runs at ~25 % of the tensor pipe at 64 rows — warp stall
# reasons per launch (q·k·v, o, gate·up, down of one step) at batch 64 and 32, one and two tiles
# per warp, real clocks; and the SASS of the 64-row two-tile kernel's main loop.
set -uo pipefail
exec > >(tee ${OUT:-.}/session21-c.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
M="gpu__time_duration.sum,sm__cycles_elapsed.avg,smsp__inst_executed.sum,sm__inst_executed_pipe_tensor_op_hmma.sum,smsp__warps_active.avg.per_cycle_active,regex:smsp__average_warps_issue_stalled_.*_per_issue_active.ratio"
for cfg in "64 2" "64 1" "32 2"; do
  set -- $cfg
  echo "== batch $1, tiles per warp $2"
  KVRUN_GPTQ_TC_TILES=$2 timeout 120 ncu --csv --clock-control none --kernel-name regex:gemm_tc --launch-skip 130 --launch-count 4 --metrics "$M" \
    $k bench -c /tmp/g.toml --batch $1 --prompt-tokens 32 --new-tokens 4 --warmup-tokens 0 2>/dev/null > /tmp/st.csv
  python3 - <<'PY'
import csv
rows=[r for r in csv.reader(open('/tmp/st.csv')) if len(r)>10]
h=rows[0]; data=rows[1:]
ki=h.index('Kernel Name'); gi=h.index('Grid Size') if 'Grid Size' in h else None
mi=h.index('Metric Name'); vi=h.index('Metric Value'); ii=h.index('ID')
by={}
for r in data: by.setdefault(r[ii],{})['grid']=r[h.index('Grid Size')] if 'Grid Size' in h else ''; by[r[ii]][r[mi]]=r[vi]
for i,m in by.items():
    st={k.replace('smsp__average_warps_issue_stalled_','').replace('_per_issue_active.ratio',''):float(v.replace(',','')) for k,v in m.items() if k.startswith('smsp__average_warps_issue_stalled_')}
    top=sorted(st.items(),key=lambda x:-x[1])[:8]
    f=lambda k: m.get(k,'?')
    print(f"grid {m['grid']}: {f('gpu__time_duration.sum')} ns, cycles {f('sm__cycles_elapsed.avg')}, inst {f('smsp__inst_executed.sum')}, hmma {f('sm__inst_executed_pipe_tensor_op_hmma.sum')}, warps/smsp {f('smsp__warps_active.avg.per_cycle_active')}")
    print("   stalls per issue: "+", ".join(f"{k} {v:.2f}" for k,v in top))
PY
done
date -u
cuobjdump -sass -fun '_ZN5kvrun4gptq45_GLOBAL__N__5f3e6762_12_gptq_cuda_cu_f1dbc81014gemm_tc_kernelILb0ELi8ELi2EEEvPK5uint4PK5uint2PKiPKfS8_SC_PfSD_iiiiib' build-cuda/plugins/weights_gptq/kvrun_weights_gptq.so > ${OUT:-.}/sass-tc82.txt 2>&1 || cuobjdump -sass build-cuda/plugins/weights_gptq/kvrun_weights_gptq.so | awk '/Function : .*gemm_tc_kernelILb0ELi8ELi2/{p=1;print;next} p&&/Function : /{p=0} p' > ${OUT:-.}/sass-tc82.txt
wc -l ${OUT:-.}/sass-tc82.txt
date -u
