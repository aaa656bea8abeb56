# Session 19, call C: do cuBLAS's sm_90 kernels (nvjet) wait for their predecessor with
# griddepcontrol.wait (then a programmatic graph edge into them would be safe)? The SASS mnemonic
# from a two-line kernel first, then every nvjet function of libcublasLt's sm_90 code.
set -uo pipefail
exec > >(tee ${OUT:-.}/session19-c.log) 2>&1
date -u
cd /tmp
cat > gdc.cu <<'EOT'
__global__ void k(float* y) { asm volatile("griddepcontrol.launch_dependents;"); asm volatile("griddepcontrol.wait;" ::: "memory"); y[threadIdx.x] = 1.f; }
EOT
nvcc -gencode arch=compute_90,code=sm_90 -cubin -o gdc.cubin gdc.cu && cuobjdump -sass gdc.cubin | grep -E "^\s+/\*[0-9a-f]{4}\*/" | head -20
ops=$(cuobjdump -sass gdc.cubin | grep -E "^\s+/\*[0-9a-f]{4}\*/" | sed -E 's/^\s+\/\*[0-9a-f]+\*\/\s+//; s/^@!?U?P[0-9T] +//' | awk '{print $1}' | sed 's/\..*//; s/;//' |
  grep -vE '^(MOV|S2R|IMAD|STG|EXIT|BRA|NOP|LDC|ULDC|IADD3|SHF|LEA|S2UR|UMOV|CS2R|ISETP|LOP3)$' | sort -u | paste -sd'|')
echo "opcodes of griddepcontrol: $ops"
[ -z "$ops" ] && ops=ACQBULK
lib=$(ls /usr/local/cuda/lib64/libcublasLt.so.1* 2>/dev/null | head -1); [ -z "$lib" ] && lib=$(ldconfig -p | grep -o '/.*libcublasLt.so.*' | head -1)
echo "lib $lib"
time (timeout 300 cuobjdump -sass -arch sm_90 "$lib" 2>/dev/null | awk -v pat="$ops" '
  /Function :/ {f=$3; nv = (f ~ /nvjet/); if (nv) nfun++; next}
  nv && $0 ~ pat { op = $2; if (op ~ /^@/) op = $3; key = f " " op; if (!(key in seen)) { seen[key]=1; cnt[op]++; if (!(f in fs)) {fs[f]=1; nwith++} } }
  END { print nfun " nvjet functions, " nwith " with a matched instruction"; for (k in cnt) print k, cnt[k] }' > /tmp/gdc-summary.txt)
cat /tmp/gdc-summary.txt | head -30
date -u
