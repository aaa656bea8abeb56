// Test helper: the CUDA runtime's graph API, taken from the copy already loaded in the process
// (the CUDA backend module's), for tests that do not link CUDA themselves. Capture is a property of
// the stream, so launches from the plugins' own static runtimes are captured too. The tests capture
// in cudaStreamCaptureModeGlobal (0), so a stray allocation or host sync fails the capture.
#pragma once

#include <dlfcn.h>

namespace kvrun::test {

struct CudaGraphApi {
  using BeginFn = int (*)(void* stream, int mode);
  using EndFn = int (*)(void* stream, void** graph);
  using InstFn = int (*)(void** exec, void* graph, unsigned long long flags);
  using LaunchFn = int (*)(void* exec, void* stream);
  using DestroyFn = int (*)(void*);
  BeginFn begin = nullptr;
  EndFn end = nullptr;
  InstFn instantiate = nullptr;
  LaunchFn launch = nullptr;
  DestroyFn exec_destroy = nullptr;
  DestroyFn graph_destroy = nullptr;
  bool ok() const { return begin && end && instantiate && launch && exec_destroy && graph_destroy; }
};

inline CudaGraphApi cuda_graph_api() {
  CudaGraphApi api;
  void* h = nullptr;
  for (const char* name : {"libcudart.so.13", "libcudart.so.12", "libcudart.so"}) {
    h = dlopen(name, RTLD_NOW | RTLD_NOLOAD);  // only the instance already in the process
    if (h) break;
  }
  if (!h) return api;
  api.begin = reinterpret_cast<CudaGraphApi::BeginFn>(dlsym(h, "cudaStreamBeginCapture"));
  api.end = reinterpret_cast<CudaGraphApi::EndFn>(dlsym(h, "cudaStreamEndCapture"));
  api.instantiate = reinterpret_cast<CudaGraphApi::InstFn>(dlsym(h, "cudaGraphInstantiate"));
  api.launch = reinterpret_cast<CudaGraphApi::LaunchFn>(dlsym(h, "cudaGraphLaunch"));
  api.exec_destroy = reinterpret_cast<CudaGraphApi::DestroyFn>(dlsym(h, "cudaGraphExecDestroy"));
  api.graph_destroy = reinterpret_cast<CudaGraphApi::DestroyFn>(dlsym(h, "cudaGraphDestroy"));
  return api;
}

}  // namespace kvrun::test
