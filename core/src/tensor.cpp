#include "kvrun/tensor.hpp"

namespace kvrun {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string TensorView::shape_string() const {
  return kvrun::shape_string(std::vector<int64_t>(shape.begin(), shape.begin() + rank));
}

}  // namespace kvrun
