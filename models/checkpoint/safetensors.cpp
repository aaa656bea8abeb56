// kvrun — one .safetensors file: mmap read-only, strict header validation (SPECS.md §4).
//
// Layout: [u64 LE header length N][N bytes JSON header][data]. Only the header is read on open;
// tensor data is reached through the read-only mapping (pages load when first touched).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string_view>
#include <tuple>

#include <nlohmann/json.hpp>

#include "checkpoint_util.hpp"
#include "kvrun/error.hpp"
#include "kvrun/models/checkpoint.hpp"

namespace kvrun {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;  // 100 MB, as the reference library

struct StDtype {
  std::string_view name;
  unsigned bits;    // per element
  bool supported;   // maps to a kvrun::DType
  DType dtype;      // when supported
};

// Every dtype of the safetensors format. Valid-but-unsupported ones are validated like the others
// and then refused when asked for.
constexpr StDtype kDtypes[] = {
    {"F32", 32, true, DType::f32},      {"F16", 16, true, DType::f16},
    {"BF16", 16, true, DType::bf16},    {"I32", 32, true, DType::i32},
    {"I8", 8, true, DType::i8},         {"U8", 8, true, DType::u8},
    {"F64", 64, false, DType::f32},     {"I64", 64, false, DType::f32},
    {"U64", 64, false, DType::f32},     {"U32", 32, false, DType::f32},
    {"I16", 16, false, DType::f32},     {"U16", 16, false, DType::f32},
    {"BOOL", 8, false, DType::f32},     {"C64", 64, false, DType::f32},
    {"F8_E4M3", 8, false, DType::f32},  {"F8_E5M2", 8, false, DType::f32},
    {"F8_E8M0", 8, false, DType::f32},  {"F6_E2M3", 6, false, DType::f32},
    {"F6_E3M2", 6, false, DType::f32},  {"F4", 4, false, DType::f32},
};

const StDtype* find_dtype(std::string_view s) {
  for (const auto& d : kDtypes)
    if (d.name == s) return &d;
  return nullptr;
}


std::string range_str(uint64_t b, uint64_t e) {
  return "[" + std::to_string(b) + ", " + std::to_string(e) + "]";
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

[[noreturn]] void st_fail(const std::string& path, const std::string& what) {
  fail(ErrorKind::model, path + ": " + what);
}

}  // namespace

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) st_fail(path, std::string("cannot open safetensors file: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) st_fail(path, std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) st_fail(path, "not a regular file");
  const uint64_t file_size = uint64_t(st.st_size);
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  if (file_size >= 8) {  // shorter files are refused by validate() without a mapping
    void* map = ::mmap(nullptr, size_t(file_size), PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (map == MAP_FAILED) st_fail(path, std::string("mmap failed: ") + std::strerror(errno));
    f->map_ = map;  // from here on the destructor unmaps, also when validation throws
    f->map_size_ = size_t(file_size);
  }
  f->validate(static_cast<const char*>(f->map_), file_size);
  return f;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::parse(const void* bytes, size_t size, const std::string& name) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = name;
  f->validate(static_cast<const char*>(bytes), uint64_t(size));
  return f;
}

void SafetensorsFile::validate(const char* base, uint64_t file_size) {
  const std::string& path = path_;
  const std::string redownload = "; the file is truncated or corrupt: re-download or re-convert it";
  if (file_size < 8)
    st_fail(path, "file is " + std::to_string(file_size) +
        " bytes, too short for the 8-byte safetensors header length" + redownload);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(base[i]);  // little-endian
  if (n > kMaxHeaderBytes)
    st_fail(path, "header length " + std::to_string(n) + " bytes exceeds the 100 MB limit of the safetensors format" +
        "; this is not a safetensors file or it is corrupt");
  if (n > file_size - 8)
    st_fail(path, "header length " + std::to_string(n) + " bytes goes beyond the end of the file (" +
        std::to_string(file_size) + " bytes)" + redownload);
  if (n < 2) st_fail(path, "header length " + std::to_string(n) + " bytes is too small for a JSON header" + redownload);

  const char* data = base + 8 + n;
  const uint64_t data_size = file_size - 8 - n;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(base + 8, base + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    st_fail(path, std::string("header is not valid JSON (") + e.what() + ")" + redownload);
  }
  if (!header.is_object()) st_fail(path, "header is not a JSON object" + redownload);

  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  ranges.reserve(header.size());

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (v.is_null()) continue;
      if (!v.is_object()) st_fail(path, "\"__metadata__\" must be an object of strings, got " + ckpt_detail::json_brief(v));
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          st_fail(path, "\"__metadata__\" key '" + m.key() + "' must be a string, got " + ckpt_detail::json_brief(m.value()));
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!v.is_object()) st_fail(path, where + "entry must be an object, got " + ckpt_detail::json_brief(v));

    auto dt_it = v.find("dtype");
    if (dt_it == v.end() || !dt_it->is_string()) st_fail(path, where + "missing or non-string \"dtype\"");
    const std::string dt_name = dt_it->get<std::string>();
    const StDtype* dt = find_dtype(dt_name);
    if (!dt)
      st_fail(path, where + "unknown dtype '" + dt_name +
          "' (safetensors dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL F8_E4M3 F8_E5M2 ...)" +
          redownload);

    auto sh_it = v.find("shape");
    if (sh_it == v.end() || !sh_it->is_array()) st_fail(path, where + "missing or non-array \"shape\"");
    std::vector<int64_t> shape;
    shape.reserve(sh_it->size());
    uint64_t numel = 1;
    for (const auto& d : *sh_it) {
      if (!d.is_number_unsigned()) st_fail(path, where + "shape " + ckpt_detail::json_brief(*sh_it) + " must hold non-negative integers");
      uint64_t dim = d.get<uint64_t>();
      if (dim > uint64_t(std::numeric_limits<int64_t>::max()) || __builtin_mul_overflow(numel, dim, &numel))
        st_fail(path, where + "shape " + ckpt_detail::json_brief(*sh_it) + " overflows 64-bit element counts");
      shape.push_back(int64_t(dim));
    }

    auto off_it = v.find("data_offsets");
    if (off_it == v.end() || !off_it->is_array() || off_it->size() != 2 || !(*off_it)[0].is_number_unsigned() ||
        !(*off_it)[1].is_number_unsigned())
      st_fail(path, where + "\"data_offsets\" must be [begin, end] of non-negative integers, got " +
          (off_it == v.end() ? std::string("nothing") : ckpt_detail::json_brief(*off_it)));
    const uint64_t begin = (*off_it)[0].get<uint64_t>();
    const uint64_t end = (*off_it)[1].get<uint64_t>();
    if (begin > end) st_fail(path, where + "data_offsets " + range_str(begin, end) + " has begin > end" + redownload);
    if (end > data_size)
      st_fail(path, where + "data_offsets " + range_str(begin, end) + " lie outside the data section (" +
          std::to_string(data_size) + " bytes after the header)" + redownload);

    uint64_t bits = 0;
    if (__builtin_mul_overflow(numel, uint64_t(dt->bits), &bits) || bits % 8 != 0 || bits / 8 != end - begin) {
      std::string need = (bits % 8 == 0) ? std::to_string(bits / 8) + " bytes"
                                          : std::to_string(numel) + " x " + std::to_string(dt->bits) + " bits";
      st_fail(path, where + "size mismatch: shape " + shape_string(shape) + " of " + dt_name + " needs " + need +
          " but data_offsets " + range_str(begin, end) + " hold " + std::to_string(end - begin) + " bytes" +
          redownload);
    }
    if (end > begin) ranges.push_back({begin, end, &name});

    if (!dt->supported) {
      unsupported_[name] = dt_name;
      continue;
    }
    HostTensor t;
    t.name = name;
    t.dtype = dt->dtype;
    t.shape = std::move(shape);
    t.data = data + begin;
    t.nbytes = size_t(end - begin);
    t.file = path;
    tensors_.emplace(name, std::move(t));
  }

  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  for (size_t i = 1; i < ranges.size(); ++i) {
    const Range& p = ranges[i - 1];
    const Range& c = ranges[i];
    if (c.begin < p.end)
      st_fail(path, "tensors '" + *p.name + "' " + range_str(p.begin, p.end) + " and '" + *c.name + "' " +
          range_str(c.begin, c.end) + " have overlapping data_offsets" + redownload);
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

const HostTensor& SafetensorsFile::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it != tensors_.end()) return it->second;
  auto u = unsupported_.find(name);
  if (u != unsupported_.end())
    fail(ErrorKind::model, path_ + ": tensor '" + name + "' has dtype " + u->second +
                               ", which kvrun cannot load (supported: F32, F16, BF16, I32, I8, U8); "
                               "convert the checkpoint's tensors to one of those");
  fail(ErrorKind::model, path_ + ": no tensor '" + name + "' in this file (it holds " +
                             std::to_string(tensors_.size() + unsupported_.size()) + " tensors)");
}

}  // namespace kvrun
