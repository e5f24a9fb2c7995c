// A small, defensive JSON reader/writer for checkpoint headers (safetensors) and configs.
// Bounded recursion and explicit errors: a corrupt header must never crash the host process.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace primal {
namespace json {

struct Value {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<Value> arr;
  std::map<std::string, Value> obj;

  bool has(const std::string& k) const { return kind == Object && obj.count(k) > 0; }
  const Value& at(const std::string& k) const;  // throws Error when missing
};

// Throws primal::Error("<what>: invalid JSON at byte N: ...").
Value parse(const std::string& text, const std::string& what);
std::string quote(const std::string& s);
std::string number(double v);  // shortest round-trippable representation

}  // namespace json
}  // namespace primal
