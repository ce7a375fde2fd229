// Typed errors. The bindings translate them: ValueError for bad values,
// TypeError for wrong types, RuntimeError for failures of the machine or backend.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace tformer {

// Raised as Python's TypeError.
class TypeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Joins the arguments with operator<< into one message.
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

template <typename... Args>
[[noreturn]] void throw_value_error(const Args&... args) {
  throw std::invalid_argument(cat(args...));
}

template <typename... Args>
[[noreturn]] void throw_type_error(const Args&... args) {
  throw TypeError(cat(args...));
}

template <typename... Args>
[[noreturn]] void throw_runtime_error(const Args&... args) {
  throw std::runtime_error(cat(args...));
}

}  // namespace tformer
