// kvrun — non-owning tensor views.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "kvrun/dtype.hpp"

namespace kvrun {

// "[4, 128]"
std::string shape_string(const std::vector<int64_t>& shape);

// Where a pointer lives. Views never own memory; Buffers (device.hpp) do.
enum class MemSpace : uint8_t { host, device };

// A row-major view of up to 4 dimensions. shape[0] is the outermost (slowest) axis.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::f32;
  int rank = 0;
  std::array<int64_t, 4> shape{0, 0, 0, 0};
  MemSpace space = MemSpace::host;

  TensorView() = default;
  TensorView(void* d, DType t, std::initializer_list<int64_t> dims, MemSpace s = MemSpace::host)
      : data(d), dtype(t), rank(int(dims.size())), space(s) {
    int i = 0;
    for (int64_t v : dims) shape[i++] = v;
  }

  int64_t numel() const noexcept {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= shape[i];
    return n;
  }
  size_t nbytes() const noexcept { return size_t(numel()) * dtype_size(dtype); }
  int64_t dim(int i) const noexcept { return shape[i < 0 ? rank + i : i]; }
  // Rows = product of all but the last axis; cols = last axis.
  int64_t rows() const noexcept { return rank == 0 ? 1 : numel() / shape[rank - 1]; }
  int64_t cols() const noexcept { return rank == 0 ? 1 : shape[rank - 1]; }
  template <class T>
  T* as() const noexcept { return static_cast<T*>(data); }
  // Rows [r0, r0+n) of a view, keeping its other axes (views over rows of axis 0).
  TensorView slice_rows(int64_t r0, int64_t n) const noexcept {
    TensorView v = *this;
    int64_t row_elems = numel() / (shape[0] ? shape[0] : 1);
    v.data = static_cast<char*>(data) + size_t(r0 * row_elems) * dtype_size(dtype);
    v.shape[0] = n;
    return v;
  }
  std::string shape_string() const;  // "[4, 128]"
};

}  // namespace kvrun
