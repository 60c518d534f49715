// Kernel parameter layouts from PTX text, for fatbins that carry no cubin for the device.
//
// Only what the layout needs is parsed: top-level `.entry name ( .param ..., ... )` declarations
// with a body, `.target`, and top-level `.global` / `.const` variables. Function bodies are
// skipped by brace depth. Each parameter is `.param [.align N] .type [.ptr .space [.align M]]
// name[N][M]...`; it is placed at the next multiple of its alignment (the explicit `.align`, else
// the element width). The `.align` after `.ptr` is the pointee's and does not move the parameter.
#include <fmt/core.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <charconv>
#include <optional>
#include <string>

#include "fatbin/bytes.h"
#include "fatbin/image_kernels.h"

namespace gpubroker::fatbin {
namespace detail {
namespace {

bool is_word_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '$' || c == '%';
}

// Splits PTX into tokens: directives (".param"), words (names and numbers), quoted strings and
// single punctuation characters. Comments and white space are dropped.
class PtxTokens {
 public:
  explicit PtxTokens(std::string_view text) : text_(text) {}

  // The next token; empty at the end of the text.
  std::string_view next() {
    skip_space_and_comments();
    if (at_ >= text_.size()) return {};
    const std::size_t start = at_;
    const char c = text_[at_];
    if (c == '.' || is_word_char(c)) {
      ++at_;
      while (at_ < text_.size() && is_word_char(text_[at_])) ++at_;
    } else if (c == '"') {
      ++at_;
      while (at_ < text_.size() && text_[at_] != '"') at_ += text_[at_] == '\\' ? 2 : 1;
      at_ = std::min(at_ + 1, text_.size());
    } else {
      ++at_;
    }
    return text_.substr(start, at_ - start);
  }

  std::string_view peek() {
    const std::size_t saved = at_;
    std::string_view token = next();
    at_ = saved;
    return token;
  }

  [[nodiscard]] std::size_t line() const {
    return 1 + static_cast<std::size_t>(std::count(text_.begin(), text_.begin() + at_, '\n'));
  }

 private:
  void skip_space_and_comments() {
    while (at_ < text_.size()) {
      const char c = text_[at_];
      if (std::isspace(static_cast<unsigned char>(c)) != 0 || c == '\0') {
        ++at_;
      } else if (text_.substr(at_, 2) == "//") {
        const std::size_t end = text_.find('\n', at_);
        at_ = end == std::string_view::npos ? text_.size() : end + 1;
      } else if (text_.substr(at_, 2) == "/*") {
        const std::size_t end = text_.find("*/", at_ + 2);
        at_ = end == std::string_view::npos ? text_.size() : end + 2;
      } else {
        return;
      }
    }
  }

  std::string_view text_;
  std::size_t at_ = 0;
};

// The width of a parameter element type, 0 for anything that is not one.
std::uint32_t type_width(std::string_view type) {
  static constexpr std::pair<std::string_view, std::uint32_t> kWidths[] = {
      {".u8", 1},     {".s8", 1},         {".b8", 1},      {".u16", 2}, {".s16", 2}, {".b16", 2},
      {".f16", 2},    {".bf16", 2},       {".u32", 4},     {".s32", 4}, {".b32", 4}, {".f32", 4},
      {".f16x2", 4},  {".bf16x2", 4},     {".u64", 8},     {".s64", 8}, {".b64", 8}, {".f64", 8},
      {".texref", 8}, {".samplerref", 8}, {".surfref", 8},
  };
  for (const auto& [name, width] : kWidths) {
    if (name == type) return width;
  }
  return 0;
}

bool is_state_space(std::string_view token) {
  return token == ".global" || token == ".const" || token == ".local" || token == ".shared";
}

// A decimal or 0x-hexadecimal count with an optional U suffix; nullopt when not one or >= 2^32.
std::optional<std::uint64_t> parse_count(std::string_view token) {
  if (!token.empty() && (token.back() == 'U' || token.back() == 'u')) token.remove_suffix(1);
  int base = 10;
  if (token.size() > 2 && token[0] == '0' && (token[1] == 'x' || token[1] == 'X')) {
    base = 16;
    token.remove_prefix(2);
  }
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(token.data(), token.data() + token.size(), value, base);
  if (token.empty() || error != std::errc{} || end != token.data() + token.size() ||
      value >= (std::uint64_t{1} << 32)) {
    return std::nullopt;
  }
  return value;
}

class PtxReader {
 public:
  explicit PtxReader(std::string_view text) : tokens_(text) {}

  Result<ImageKernels> read() {
    std::size_t depth = 0;
    for (std::string_view token = tokens_.next(); !token.empty(); token = tokens_.next()) {
      if (token == "{") {
        ++depth;
      } else if (token == "}") {
        if (depth == 0) return error("'}' without '{'");
        --depth;
      } else if (depth > 0) {
        continue;
      } else if (token == ".entry") {
        Result<bool> has_body = read_entry();
        if (!has_body) return has_body.error();
        if (has_body.value()) depth = 1;
      } else if (token == ".target") {
        read_target();
      } else if (token == ".global" || token == ".const") {
        result_.has_writable_globals = true;
      }
    }
    if (depth != 0) return error("text ends inside a body");
    std::sort(result_.kernels.begin(), result_.kernels.end(),
              [](const KernelInfo& a, const KernelInfo& b) { return a.name < b.name; });
    return std::move(result_);
  }

 private:
  FatbinError error(std::string_view what) {
    return make_error(FatbinErrc::kMalformedPtx, fmt::format("line {}: {}", tokens_.line(), what));
  }

  // `.target sm_90a` (possibly followed by `, texmode_...`): the number, if there is one.
  void read_target() {
    std::string_view target = tokens_.next();
    for (std::string_view prefix : {"sm_", "compute_"}) {
      if (target.substr(0, prefix.size()) != prefix) continue;
      target.remove_prefix(prefix.size());
      std::uint32_t arch = 0;
      std::from_chars(target.data(), target.data() + target.size(), arch);
      result_.arch = arch;
    }
  }

  // After `.entry`: the name, the parameter list, then directives up to the body. True when a
  // body follows (the reader is then inside it), false for a declaration ending in ';'.
  Result<bool> read_entry() {
    KernelInfo kernel;
    const std::string_view name = tokens_.next();
    if (name.empty() || !is_word_char(name.front())) return error("`.entry` without a name");
    kernel.name = std::string(name);
    std::string_view token = tokens_.next();
    if (token == "(") {
      Result<void> params = read_params(kernel);
      if (!params) return params.error();
      token = tokens_.next();
    }
    while (token != "{" && token != ";") {
      if (token.empty() || token == "}" || token == "(") {
        return error(fmt::format("`.entry {}` has no body", name));
      }
      token = tokens_.next();
    }
    if (token == ";") return false;
    result_.kernels.push_back(std::move(kernel));
    return true;
  }

  // The parameters up to and including the closing ')'.
  Result<void> read_params(KernelInfo& kernel) {
    std::uint64_t end = 0;
    if (tokens_.peek() == ")") {
      tokens_.next();
      return boost::outcome_v2::success();
    }
    for (;;) {
      if (tokens_.next() != ".param") return error("parameter without `.param`");
      std::uint64_t align = 0;
      std::uint32_t width = 0;
      bool after_ptr = false;
      std::string_view token = tokens_.next();
      for (; !token.empty() && token.front() == '.'; token = tokens_.next()) {
        if (token == ".align") {
          std::optional<std::uint64_t> value = parse_count(tokens_.next());
          if (!value || !std::has_single_bit(*value)) return error("bad `.align`");
          if (!after_ptr) align = *value;  // after .ptr it is the pointee's alignment
        } else if (token == ".ptr") {
          after_ptr = true;
        } else if (is_state_space(token) && after_ptr) {
          // the pointee's state space
        } else if (std::uint32_t element = type_width(token); element != 0 && width == 0) {
          width = element;
        } else {
          return error(fmt::format("unexpected `{}` in a parameter", token));
        }
      }
      if (width == 0) return error("parameter without a type");
      if (token.empty() || !is_word_char(token.front())) return error("parameter without a name");
      std::uint64_t count = 1;
      while (tokens_.peek() == "[") {
        tokens_.next();
        std::optional<std::uint64_t> dimension = parse_count(tokens_.next());
        if (!dimension || *dimension == 0 || tokens_.next() != "]") {
          return error("bad array dimension");
        }
        count *= *dimension;
        if (count >= (std::uint64_t{1} << 32)) return error("parameter too large");
      }
      if (align == 0) align = width;
      const std::uint64_t offset = (end + align - 1) / align * align;
      end = offset + count * width;
      if (end > UINT32_MAX) return error("parameter block too large");
      kernel.params.push_back(
          ParamInfo{static_cast<std::uint32_t>(offset), static_cast<std::uint32_t>(count * width)});
      kernel.param_bytes = static_cast<std::uint32_t>(end);

      const std::string_view separator = tokens_.next();
      if (separator == ")") return boost::outcome_v2::success();
      if (separator != ",") return error("expected `,` or `)` after a parameter");
    }
  }

  PtxTokens tokens_;
  ImageKernels result_;
};

}  // namespace

Result<ImageKernels> read_ptx(std::string_view ptx) { return PtxReader(ptx).read(); }

}  // namespace detail

Result<std::vector<KernelInfo>> kernels_from_ptx(std::string_view ptx) {
  return detail::without_exceptions([&]() -> Result<std::vector<KernelInfo>> {
    Result<detail::ImageKernels> image = detail::read_ptx(ptx);
    if (!image) return image.error();
    return std::move(image).value().kernels;
  });
}

}  // namespace gpubroker::fatbin
