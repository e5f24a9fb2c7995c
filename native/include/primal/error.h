// The one exception type the core throws; the binding turns it into a JavaScript Error.
#pragma once
#include <stdexcept>
#include <string>

namespace primal {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// Thrown by backends when device memory runs out; the message says how much was asked for.
class OutOfMemory : public Error {
 public:
  explicit OutOfMemory(const std::string& msg) : Error(msg) {}
};

#define PRIMAL_CHECK(cond, msg)                              \
  do {                                                       \
    if (!(cond)) throw ::primal::Error(std::string() + msg); \
  } while (0)

}  // namespace primal
