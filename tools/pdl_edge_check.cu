// A negative control for the CUDA backend's PDL probe (CudaOps::lt_probe_pdl): does a graph edge
// made programmatic after capture (promote_kernel_edges' method) let a kernel that does NOT wait
// (no griddepcontrol.wait) read its input before the kernel before it wrote it? The probe trusts a
// library kernel only if it reads the written x; that proves something only if a kernel that does
// not wait reads the stale x under the same edge. Not part of the build. Here or on the GPU machine:
//   nvcc -O2 -std=c++20 -gencode arch=compute_90,code=sm_90 tools/pdl_edge_check.cu -o pdl_edge_check
//   ./pdl_edge_check
// It captures writer → reader for two readers: one that waits (griddepcontrol.wait) and one that
// does not, each with the edge left ordinary and made programmatic, and prints how many of the
// reader's outputs saw the writer's values.
#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#include "check.cuh"  // CK

// Lets the next grid launch, spins `ns`, then writes x[i] = 1. x: [n] int.
__global__ void writer(int* x, int n, unsigned long long ns) {
  asm volatile("griddepcontrol.launch_dependents;");
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); while (t - t0 < ns);
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] = 1;
}
// y[i] = x[i], after griddepcontrol.wait when `wait`. x, y: [n] int.
template <bool kWait>
__global__ void reader(const int* x, int* y, int n) {
  if constexpr (kWait) asm volatile("griddepcontrol.wait;" ::: "memory");
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] = x[i];
}

template <bool kWait>
void run(cudaStream_t st, int* x, int* y, int n, bool programmatic) {
  CK(cudaMemsetAsync(x, 0, n * sizeof(int), st));
  CK(cudaMemsetAsync(y, 0xff, n * sizeof(int), st));
  CK(cudaStreamSynchronize(st));
  cudaGraph_t g = nullptr;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  writer<<<8, 256, 0, st>>>(x, n, 50000);
  reader<kWait><<<8, 256, 0, st>>>(x, y, n);
  CK(cudaStreamEndCapture(st, &g));
  if (programmatic) {
    size_t ne = 0;
    CK(cudaGraphGetEdges(g, nullptr, nullptr, nullptr, &ne));
    std::vector<cudaGraphNode_t> from(ne), to(ne);
    std::vector<cudaGraphEdgeData> d(ne);
    CK(cudaGraphGetEdges(g, from.data(), to.data(), d.data(), &ne));
    for (size_t i = 0; i < ne; ++i) {
      cudaGraphEdgeData e{};
      e.from_port = cudaGraphKernelNodePortProgrammatic;
      e.type = cudaGraphDependencyTypeProgrammatic;
      CK(cudaGraphRemoveDependencies(g, &from[i], &to[i], &d[i], 1));
      CK(cudaGraphAddDependencies(g, &from[i], &to[i], &e, 1));
    }
  }
  cudaGraphExec_t ex = nullptr;
  CK(cudaGraphInstantiate(&ex, g, 0));
  CK(cudaGraphLaunch(ex, st));
  std::vector<int> h(n);
  CK(cudaMemcpyAsync(h.data(), y, n * sizeof(int), cudaMemcpyDeviceToHost, st));
  CK(cudaStreamSynchronize(st));
  int seen = 0;
  for (int v : h) seen += v == 1;
  std::printf("reader %-10s edge %-12s: %d of %d outputs saw the write\n", kWait ? "waits" : "no wait",
              programmatic ? "programmatic" : "ordinary", seen, n);
  cudaGraphExecDestroy(ex);
  cudaGraphDestroy(g);
}

int main() {
  const int n = 1 << 20;
  int *x = nullptr, *y = nullptr;
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  CK(cudaMalloc(&x, n * sizeof(int)));
  CK(cudaMalloc(&y, n * sizeof(int)));
  for (bool p : {false, true}) {
    run<true>(st, x, y, n, p);
    run<false>(st, x, y, n, p);
  }
  return 0;
}
