# Session 10: a NumPy emulation of branch naive-decode-mma's fragment mapping (ldmatrix.x4.trans of the
# [key][dim] f16 tile as A, the weights as B, mma.sync m16n8k16, the lanes' read-out of D) against
# O = w · (v − z) computed directly; edit D, GP, KR for the other shapes (64/2/16, 64/1/32).
import numpy as np
rng=np.random.default_rng(0)
D=128; GP=1; KR=16  # keys per round (u8 D128 GP1)
kVd=D+8
vmz=rng.integers(-255,256,(KR,D))            # v - z per key row
w=rng.random((GP,KR))                        # weights
# smem tile
vsh=np.zeros((KR,kVd),dtype=np.int64); vsh[:,:D]=vmz
def ldsm_x4_trans(lane_addr):  # lane_addr[l] = (row, col) start of row for matrix l>>3 row l&7
    mats=[]
    for m in range(4):
        M=np.array([[vsh[lane_addr[8*m+i][0], lane_addr[8*m+i][1]+j] for j in range(8)] for i in range(8)])
        mats.append(M)
    regs=[[None]*4 for _ in range(32)]
    for l in range(32):
        for j in range(4):
            MT=mats[j].T
            regs[l][j]=(MT[l//4][2*(l%4)], MT[l//4][2*(l%4)+1])
    return regs
O=np.zeros((GP,D))
for k16 in range(KR//16):
    # B fragments
    bfr=[]
    for l in range(32):
        g,t=l>>2,l&3
        if g<2*GP:
            h=g>>1; part=g&1
            wp=w[h,16*k16+2*t:16*k16+2*t+10]
            val=lambda x: x if part==0 else 0.0   # emulate hi=w, lo=0 (exact split irrelevant)
            bfr.append(((val(wp[0]),val(wp[1])),(val(wp[8]),val(wp[9]))))
        else: bfr.append(((0,0),(0,0)))
    # B matrix from fragments
    B=np.zeros((16,8))
    for l in range(32):
        g,t=l>>2,l&3
        B[2*t][g],B[2*t+1][g]=bfr[l][0]; B[2*t+8][g],B[2*t+9][g]=bfr[l][1]
    for b in range(D//16):
        addr=[]
        for l in range(32):
            mi,ri=l>>3,l&7
            row=16*k16+ri+(8 if mi>=2 else 0)
            addr.append((row,16*b+(mi&1)*8))
        regs=ldsm_x4_trans(addr)
        A=np.zeros((16,16))
        for l in range(32):
            g,t=l>>2,l&3
            A[g][2*t],A[g][2*t+1]=regs[l][0]; A[g+8][2*t],A[g+8][2*t+1]=regs[l][1]
            A[g][2*t+8],A[g][2*t+9]=regs[l][2]; A[g+8][2*t+8],A[g+8][2*t+9]=regs[l][3]
        Dm=A@B
        for l in range(32):
            g,t=l>>2,l&3
            if t<GP:
                O[t][16*b+g]+=Dm[g][2*t]+Dm[g][2*t+1]
                O[t][16*b+g+8]+=Dm[g+8][2*t]+Dm[g+8][2*t+1]
ref=w@vmz
print("max abs diff", np.abs(O-ref).max(), "ref scale", np.abs(ref).max())
