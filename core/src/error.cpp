#include "kvrun/error.hpp"

namespace kvrun {

const char* error_kind_name(ErrorKind k) noexcept {
  switch (k) {
    case ErrorKind::ok: return "ok";
    case ErrorKind::internal: return "error";
    case ErrorKind::usage: return "usage error";
    case ErrorKind::model: return "model error";
    case ErrorKind::device: return "device error";
  }
  return "error";
}

}  // namespace kvrun
