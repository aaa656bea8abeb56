// kvrun — byte-level BPE encoding/decoding shared by both tokenizer file kinds.
#include <algorithm>

#include "kvrun/error.hpp"
#include "tokenizer_impl.hpp"

namespace kvrun::tok {

// Per-encode() memo of BPE results: pre-token piece (a view into the normalized text, which
// outlives the cache) -> [offset, offset + count) in `ids`.
struct BpeTokenizer::PieceCache {
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> ranges;
  std::vector<int32_t> ids;
};

BpeTokenizer::BpeTokenizer(BpeModel model) : m_(std::move(model)) {
  for (uint32_t i = 0; i < m_.added.size(); ++i) {
    const std::string& c = m_.added[i].content;
    if (c.empty()) continue;
    added_by_first_byte_[static_cast<unsigned char>(c[0])].push_back(i);
  }
  for (auto& list : added_by_first_byte_)
    std::stable_sort(list.begin(), list.end(), [&](uint32_t a, uint32_t b) {
      return m_.added[a].content.size() > m_.added[b].content.size();
    });
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool allow_special) const {
  const std::string norm = nfc_normalize(text);
  const std::string_view s = norm;
  std::vector<int32_t> out;
  out.reserve(s.size() / 3 + 8);
  PieceCache cache;

  // Split out added tokens, leftmost-longest; the text between them goes through the
  // pre-tokenizer and BPE.
  size_t segment_start = 0;
  size_t i = 0;
  while (i < s.size()) {
    const auto& candidates = added_by_first_byte_[static_cast<unsigned char>(s[i])];
    const AddedToken* hit = nullptr;
    for (uint32_t idx : candidates) {
      const AddedToken& t = m_.added[idx];
      if (t.special && !allow_special) continue;
      if (s.compare(i, t.content.size(), t.content) == 0) {
        hit = &t;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    encode_segment(s.substr(segment_start, i - segment_start), cache, out);
    out.push_back(hit->id);
    i += hit->content.size();
    segment_start = i;
  }
  encode_segment(s.substr(segment_start), cache, out);
  return out;
}

void BpeTokenizer::encode_segment(std::string_view segment, PieceCache& cache, std::vector<int32_t>& out) const {
  if (segment.empty()) return;
  auto emit = [&](std::string_view piece) {
    auto it = cache.ranges.find(piece);
    if (it != cache.ranges.end()) {
      const auto [off, count] = it->second;
      out.insert(out.end(), cache.ids.begin() + off, cache.ids.begin() + off + count);
      return;
    }
    const size_t before = out.size();
    bpe_piece(piece, out);
    const auto off = static_cast<uint32_t>(cache.ids.size());
    cache.ids.insert(cache.ids.end(), out.begin() + static_cast<std::ptrdiff_t>(before), out.end());
    cache.ranges.emplace(piece, std::pair<uint32_t, uint32_t>{off, static_cast<uint32_t>(out.size() - before)});
  };
  if (m_.stages.empty()) {  // no regex split: the whole segment is one piece
    emit(segment);
    return;
  }
  // Stage k's pieces are split again by stage k+1; the last stage's pieces are BPE-encoded.
  std::function<void(std::string_view, size_t)> split = [&](std::string_view text, size_t stage) {
    if (stage + 1 == m_.stages.size()) {
      m_.stages[stage].for_each_piece(text, emit);
    } else {
      m_.stages[stage].for_each_piece(text, [&](std::string_view piece) { split(piece, stage + 1); });
    }
  };
  split(segment, 0);
}

// Byte-pair merging of one pre-token piece: start from single bytes, repeatedly merge the adjacent
// pair with the lowest priority (leftmost on ties) until no pair merges. A min-heap of candidate
// pairs with lazy invalidation keeps this O(n log n) for long pieces. Parts are identified by the
// byte offset where they start; a part's id fixes its length, so a heap entry is still valid iff
// the part at its offset and the part after it still carry the recorded ids.
void BpeTokenizer::bpe_piece(std::string_view piece, std::vector<int32_t>& out) const {
  const size_t n = piece.size();
  if (n == 0) return;
  if (n == 1) {
    out.push_back(m_.byte_ids[static_cast<unsigned char>(piece[0])]);
    return;
  }
  if (m_.whole_piece_shortcut) {
    auto it = m_.regular_ids.find(piece);
    if (it != m_.regular_ids.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct Candidate {
    uint32_t priority;
    uint32_t pos;  // byte offset of the left part
    int32_t left, right, merged;
  };
  const auto later = [](const Candidate& a, const Candidate& b) {
    return a.priority != b.priority ? a.priority > b.priority : a.pos > b.pos;
  };
  const auto none = static_cast<uint32_t>(n);
  std::vector<int32_t> id(n);     // id of the part starting at offset i, -1 if none starts there
  std::vector<uint32_t> next(n), prev(n);
  for (size_t i = 0; i < n; ++i) {
    id[i] = m_.byte_ids[static_cast<unsigned char>(piece[i])];
    next[i] = static_cast<uint32_t>(i + 1);
    prev[i] = i == 0 ? none : static_cast<uint32_t>(i - 1);
  }
  std::vector<Candidate> heap;
  heap.reserve(n);
  const auto consider = [&](uint32_t left_pos) {
    const uint32_t right_pos = next[left_pos];
    if (right_pos == none) return;
    auto it = m_.merges.find(pair_key(id[left_pos], id[right_pos]));
    if (it == m_.merges.end()) return;
    heap.push_back({it->second.priority, left_pos, id[left_pos], id[right_pos], it->second.merged});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (uint32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate c = heap.back();
    heap.pop_back();
    if (id[c.pos] != c.left) continue;
    const uint32_t r = next[c.pos];
    if (r == none || id[r] != c.right) continue;
    id[c.pos] = c.merged;
    id[r] = -1;
    next[c.pos] = next[r];
    if (next[r] != none) prev[next[r]] = c.pos;
    if (prev[c.pos] != none) consider(prev[c.pos]);
    consider(c.pos);
  }
  for (uint32_t i = 0; i != none; i = next[i]) out.push_back(id[i]);
}

std::string BpeTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size() || m_.present[static_cast<size_t>(id)] == 0)
    fail(ErrorKind::usage, "token id " + std::to_string(id) + " is not in the " + m_.kind + " vocabulary (" +
                               (id >= 0 && id < vocab_size() ? std::string("unused id")
                                                             : "valid ids are 0.." + std::to_string(vocab_size() - 1)) +
                               ")");
  return m_.bytes[static_cast<size_t>(id)];
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size() || m_.present[static_cast<size_t>(id)] == 0) token_bytes(id);  // throws
    out += m_.bytes[static_cast<size_t>(id)];
  }
  return out;
}

std::optional<int32_t> BpeTokenizer::special_id(std::string_view token) const {
  for (const AddedToken& t : m_.added)
    if (t.content == token) return t.id;
  return std::nullopt;
}

}  // namespace kvrun::tok
