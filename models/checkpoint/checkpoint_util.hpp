// kvrun — private helpers of models/checkpoint: reading small files and JSON with errors that name
// the file.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace kvrun::ckpt_detail {

// The whole file, or nullopt when it does not exist. Error(model) naming the path when it exists
// but cannot be read (or is a directory).
std::optional<std::string> read_file_if_exists(const std::string& path);

// Parses `text` (the contents of `path`) as JSON; Error(model) naming the path, with the parser's
// message, when it is malformed.
nlohmann::json parse_json(const std::string& text, const std::string& path);

// dir + "/" + name, without doubling a trailing slash.
std::string join_path(const std::string& dir, const std::string& name);

// A JSON value shortened for messages.
std::string json_brief(const nlohmann::json& v);

}  // namespace kvrun::ckpt_detail
