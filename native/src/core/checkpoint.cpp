// Whole-trainer checkpoints as safetensors: 8-byte little-endian header length, a JSON header
// (tensor dtype/shape/offsets plus "__metadata__" strings), then the raw tensor bytes.
// load() parses and validates the entire file before it changes any trainer state, so a
// truncated or foreign file leaves the running trainer intact.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif

#include "json.h"
#include "primal/checkpoint.h"
#include "primal/error.h"
#include "primal/trainer.h"
#include "model.h"

namespace primal {

namespace {

const char* kFormat = "primal-checkpoint-1";

struct TensorOut {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<char> bytes;
};

std::string shapeJson(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? "," : "") + std::to_string(s[i]);
  return o + "]";
}

std::string configJson(const TrainConfig& c) {
  const ModelConfig& m = c.model;
  std::ostringstream o;
  o << "{\"model\":{\"vocab\":" << m.vocab << ",\"dModel\":" << m.dModel << ",\"layers\":" << m.layers
    << ",\"heads\":" << m.heads << ",\"ffn\":" << m.ffn << ",\"seq\":" << m.seq
    << ",\"ropeTheta\":" << json::number(m.ropeTheta) << ",\"normEps\":" << json::number(m.normEps)
    << ",\"initStd\":" << json::number(m.initStd) << "},\"quant\":" << json::quote(quantName(c.quant))
    << ",\"actBits\":" << c.actBits << ",\"batch\":" << c.batch << ",\"accum\":" << c.accum
    << ",\"microBatch\":" << c.microBatch << ",\"recompute\":" << json::quote(recomputeName(c.recompute))
    << ",\"seed\":" << json::quote(std::to_string(c.seed)) << ",\"warmup\":" << c.warmup
    << ",\"totalSteps\":" << c.totalSteps << ",\"minLrRatio\":" << json::number(c.minLrRatio)
    << ",\"weightDecay\":" << json::number(c.weightDecay) << ",\"gradClip\":" << json::number(c.gradClip)
    << "}";
  return o.str();
}

// {"bridge":0.6666667,"flipRate":0.01,...}: every knob of the table, null for one that is off.
std::string knobsJson(const Knobs& k) {
  std::string o = "{";
  for (const KnobField& f : kKnobFields) {
    const std::optional<float> v = f.value ? std::optional<float>(k.*f.value) : k.*f.nullable;
    o += (o.size() > 1 ? "," : "") + json::quote(f.name) + ":" +
         (v ? json::number(shortestDecimal(*v)) : "null");
  }
  return o + "}";
}

// The knobs a checkpoint stored. A knob the checkpoint predates keeps its default; one this build
// does not have is refused (a newer version wrote it, and its training would differ).
Knobs knobsFromJson(const std::string& text, const std::string& what) {
  const json::Value kj = json::parse(text, what + " knobs");
  if (kj.kind != json::Value::Object) throw Error(what + ": metadata 'knobs' is not a JSON object");
  for (const auto& kv : kj.obj) {
    bool known = kv.first == "bridgeOn";  // written beside the bridge before it could be null
    for (const KnobField& f : kKnobFields) known = known || kv.first == f.name;
    if (!known)
      throw Error(what + ": metadata 'knobs' sets '" + kv.first +
                  "', a knob this build does not have (written by a newer version?)");
  }
  Knobs k;
  for (const KnobField& f : kKnobFields) {
    if (!kj.has(f.name)) continue;
    const json::Value& v = kj.at(f.name);
    const bool off = f.nullable && v.kind == json::Value::Null;
    if (!off && v.kind != json::Value::Number)
      throw Error(what + ": knob '" + f.name + "' is not a number" + (f.nullable ? " or null" : ""));
    if (f.nullable) k.*f.nullable = off ? std::nullopt : std::optional<float>(static_cast<float>(v.num));
    else k.*f.value = static_cast<float>(v.num);
  }
  if (kj.has("bridgeOn") && kj.at("bridgeOn").kind == json::Value::Bool && !kj.at("bridgeOn").b)
    k.bridge.reset();
  try {
    k.validate();
  } catch (const Error& e) {
    throw Error(what + ": invalid knobs: " + e.what());
  }
  return k;
}

template <typename T>
std::vector<char> asBytes(const std::vector<T>& v) {
  std::vector<char> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// CRC-32 (the zlib/PNG polynomial, so `zlib.crc32` in Python or Node gives the same value) over
// the tensor data: a flipped bit anywhere in a checkpoint is found when it is loaded.
uint32_t crc32Update(uint32_t crc, const char* p, size_t n) {
  static uint32_t table[256];
  static bool ready = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)ready;
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ static_cast<unsigned char>(p[i])) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

std::string hex8(uint32_t v) {
  char b[9];
  std::snprintf(b, sizeof b, "%08x", v);
  return b;
}

// Every metadata string carries its own CRC-32 in "metaCrc32" (a JSON object: field -> 8 hex
// digits), so a damaged seed, step, token count, knob or config is refused by name. Checkpoints
// written before it existed hold exactly these fields and load unchecked.
const char* kMetaCrc = "metaCrc32";
const char* const kUncheckedFields[] = {"format", "config", "knobs",        "step",     "tokens",
                                        "seed",   "rng",    "primal.extra", "dataCrc32"};

std::string metadataChecksums(const std::map<std::string, std::string>& fields) {
  std::string o = "{";
  for (const auto& kv : fields)
    o += (o.size() > 1 ? "," : "") + json::quote(kv.first) + ":" +
         json::quote(hex8(crc32Update(0, kv.second.data(), kv.second.size())));
  return o + "}";
}

// Verifies the metadata of a parsed header against its checksums. Returns false for a checkpoint
// that predates them; throws Error naming the first field that does not match.
bool checkMetadata(const json::Value& meta, const std::string& what) {
  for (const auto& kv : meta.obj)
    if (kv.second.kind != json::Value::String)
      throw Error(what + " is damaged: its metadata '" + kv.first + "' is not a string");
  if (!meta.has(kMetaCrc)) {
    for (const auto& kv : meta.obj) {
      bool known = false;
      for (const char* f : kUncheckedFields) known = known || kv.first == f;
      if (!known)
        throw Error(what + " is damaged: its metadata '" + kv.first +
                    "' is unknown, and the header has no metadata checksum (metaCrc32)");
    }
    return false;
  }
  json::Value sums;
  try {
    sums = json::parse(meta.at(kMetaCrc).str, "metaCrc32");
  } catch (const Error&) {
    sums = json::Value();
  }
  if (sums.kind != json::Value::Object)
    throw Error(what + " is damaged: its metadata checksums (metaCrc32) are unreadable");
  for (const auto& kv : meta.obj) {
    if (kv.first == kMetaCrc) continue;
    if (!sums.has(kv.first))
      throw Error(what + " is damaged: its metadata '" + kv.first + "' has no checksum in metaCrc32");
    const std::string& want = sums.at(kv.first).str;
    const std::string got = hex8(crc32Update(0, kv.second.str.data(), kv.second.str.size()));
    if (want != got)
      throw Error(what + " is damaged: its metadata '" + kv.first +
                  "' does not match the checksum in its header (metaCrc32 has " + want + ", the field has " +
                  got + ")");
  }
  for (const auto& kv : sums.obj)
    if (!meta.has(kv.first))
      throw Error(what + " is damaged: its metadata '" + kv.first + "' is missing (metaCrc32 lists it)");
  return true;
}

// Opens a checkpoint and parses its JSON header, refusing a length that is not this format's or
// larger than `maxHeader` (parsing costs many times the header's size in memory) before parsing.
// Leaves `f` open for the tensor data; `hl` and `fileSize` describe the file.
json::Value readHeader(const std::string& path, const std::string& what, uint64_t maxHeader, std::ifstream& f,
                       uint64_t& hl, uint64_t& fileSize, const char* why) {
  f.open(path, std::ios::binary | std::ios::ate);
  if (!f) throw Error("checkpoint '" + path + "' cannot be opened (missing or unreadable)");
  fileSize = static_cast<uint64_t>(f.tellg());
  f.seekg(0);
  if (fileSize < 8) throw Error(what + " is truncated: " + std::to_string(fileSize) + " bytes");
  unsigned char len[8];
  f.read(reinterpret_cast<char*>(len), 8);
  hl = 0;
  for (int i = 0; i < 8; ++i) hl |= static_cast<uint64_t>(len[i]) << (8 * i);
  if (hl > maxHeader && hl <= fileSize - 8)
    throw Error(what + " has a " + std::to_string(hl) + "-byte header; " + why + " has at most " +
                std::to_string(maxHeader) + " (not a primal checkpoint, or damaged)");
  if (hl == 0 || hl > fileSize - 8)
    throw Error(what + " has a bad header length (" + std::to_string(hl) + " bytes for a file of " +
                std::to_string(fileSize) + "): not a safetensors file, or truncated");
  std::string header(hl, '\0');
  f.read(&header[0], static_cast<std::streamsize>(hl));
  json::Value h = json::parse(header, what + " header");
  if (h.kind != json::Value::Object) throw Error(what + ": header is not a JSON object");
  if (!h.has("__metadata__") || !h.at("__metadata__").has("format") ||
      h.at("__metadata__").at("format").str != kFormat)
    throw Error(what + " is not a primal checkpoint (missing __metadata__.format = " + kFormat + ")");
  return h;
}

// Writes `parts` to `path` durably: a temporary name, fsync, rename over the target, fsync of the
// folder, so a crash leaves the old file or the complete new one and the rename survives it.
void writeDurably(const std::string& path, const std::vector<std::pair<const char*, size_t>>& parts) {
  const std::string tmp = path + ".tmp";
#ifndef _WIN32
  // A leftover of a killed save, or anything planted under this name (a link, a hard link to a file
  // elsewhere), is unlinked, never opened: the temporary file is always a new one (O_EXCL).
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0644);
  if (fd < 0) throw Error("save: cannot open '" + tmp + "' for writing: " + std::strerror(errno));
  auto failed = [&](const char* what) {
    const std::string reason = std::strerror(errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(std::string("save: ") + what + " '" + tmp + "' failed: " + reason);
  };
  for (auto& part : parts) {
    size_t done = 0;
    while (done < part.second) {
      ssize_t w = ::write(fd, part.first + done, part.second - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) failed("writing");
      done += static_cast<size_t>(w);
    }
  }
  if (::fsync(fd) != 0) failed("fsync of");
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw Error("save: closing '" + tmp + "' failed (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw Error("save: cannot rename '" + tmp + "' to '" + path + "'");
  }
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  int dfd = ::open(dir.c_str(), O_RDONLY);
  if (dfd >= 0) {
    ::fsync(dfd);  // best effort: some file systems refuse fsync on a folder
    ::close(dfd);
  }
#else
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw Error("save: cannot open '" + tmp + "' for writing");
    for (auto& part : parts) f.write(part.first, static_cast<std::streamsize>(part.second));
    f.flush();
    if (!f) {
      std::remove(tmp.c_str());
      throw Error("save: writing '" + tmp + "' failed (disk full?)");
    }
  }
  std::remove(path.c_str());
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error("save: cannot rename '" + tmp + "' to '" + path + "'");
  }
#endif
}

size_t dtypeSize(const std::string& d) {
  if (d == "F32" || d == "I32") return 4;
  if (d == "I8" || d == "U8") return 1;
  if (d == "F64" || d == "I64") return 8;
  if (d == "F16" || d == "BF16" || d == "I16") return 2;
  return 0;
}

}  // namespace

void Trainer::save(const std::string& path, const std::string& extraMeta) {
  if (accumulated_ != 0)
    throw Error("save: " + std::to_string(accumulated_) +
                " micro-batch(es) are accumulated but not applied; call applyStep() first");
  json::parse(extraMeta, "checkpoint extra metadata");  // must be valid JSON
  Model& m = *m_;
  std::vector<TensorOut> ts;
  auto dl = [&](const float* p, size_t n) {
    std::vector<float> h(n);
    be_->toHost(h.data(), p, n * sizeof(float));
    return h;
  };
  for (auto& p : m.params) {
    std::vector<int64_t> sh(p.shape.begin(), p.shape.end());
    ts.push_back({"param." + p.name, "F32", sh, asBytes(dl(p.w, p.n))});
    ts.push_back({"adam_m." + p.name, "F32", sh, asBytes(dl(p.m, p.n))});
    ts.push_back({"adam_v." + p.name, "F32", sh, asBytes(dl(p.v, p.n))});
  }
  const int nl = static_cast<int>(m.lin.size());
  // The Ghost Scale state of every layer, from device memory.
  std::vector<float> s(nl), sm(nl), sv(nl), g0(nl);
  be_->toHost(s.data(), m.ghostS(), sizeof(float) * nl);
  be_->toHost(sm.data(), m.ghostM(), sizeof(float) * nl);
  be_->toHost(sv.data(), m.ghostV(), sizeof(float) * nl);
  be_->toHost(g0.data(), m.ghostGamma0(), sizeof(float) * nl);
  for (int i = 0; i < nl; ++i) {
    BitLayer& l = m.lin[i];
    if (cfg_.quant == Quant::Poltergeist) {
      std::vector<int8_t> c(l.n), v(l.n);
      be_->toHost(c.data(), l.code, l.n);
      be_->toHost(v.data(), l.vote, l.n);
      ts.push_back({"code." + layerInfo_[i].name, "I8", {l.rows, l.cols}, asBytes(c)});
      ts.push_back({"vote." + layerInfo_[i].name, "I8", {l.rows, l.cols}, asBytes(v)});
    }
  }
  ts.push_back({"ghost.scale", "F32", {nl}, asBytes(s)});
  ts.push_back({"ghost.scale_m", "F32", {nl}, asBytes(sm)});
  ts.push_back({"ghost.scale_v", "F32", {nl}, asBytes(sv)});
  ts.push_back({"ghost.gamma0", "F32", {nl}, asBytes(g0)});

  uint32_t crc = 0;
  for (auto& t : ts) crc = crc32Update(crc, t.bytes.data(), t.bytes.size());
  std::map<std::string, std::string> meta{
      {"format", kFormat},
      {"config", configJson(cfg_)},
      {"knobs", knobsJson(cfg_.knobs)},
      {"step", std::to_string(step_)},
      {"tokens", json::number(tokens_)},
      {"seed", std::to_string(cfg_.seed)},
      {"rng", "philox4x32-10; counters derive from (seed, step): position = step"},
      {"primal.extra", extraMeta},
      {"dataCrc32", hex8(crc)}};
  meta[kMetaCrc] = metadataChecksums(meta);
  std::ostringstream h;
  h << "{\"__metadata__\":{";
  for (auto it = meta.begin(); it != meta.end(); ++it)
    h << (it == meta.begin() ? "" : ",") << json::quote(it->first) << ":" << json::quote(it->second);
  h << "}";
  size_t off = 0;
  for (auto& t : ts) {
    h << "," << json::quote(t.name) << ":{\"dtype\":\"" << t.dtype << "\",\"shape\":" << shapeJson(t.shape)
      << ",\"data_offsets\":[" << off << "," << off + t.bytes.size() << "]}";
    off += t.bytes.size();
  }
  h << "}";
  std::string header = h.str();
  while (header.size() % 8) header += ' ';
  uint64_t hl = header.size();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>(static_cast<unsigned char>(hl >> (8 * i)));
  std::vector<std::pair<const char*, size_t>> parts{{len, 8}, {header.data(), header.size()}};
  for (auto& t : ts) parts.push_back({t.bytes.data(), t.bytes.size()});
  writeDurably(path, parts);
}

std::string Trainer::load(const std::string& path, bool otherActBits) {
  const std::string what = "checkpoint '" + path + "'";
  // A header lists this model's tensors and a little metadata; anything much larger is not ours.
  const Model& mm = *m_;
  const uint64_t tensorCount = 3 * mm.params.size() + 2 * mm.lin.size() + 4;
  const uint64_t maxHeader = 1024 * 1024 + 1024 * tensorCount;
  std::ifstream f;
  uint64_t hl = 0, fileSize = 0;
  const json::Value h = readHeader(path, what, maxHeader, f, hl, fileSize, "a checkpoint of this model");
  const json::Value& meta = h.at("__metadata__");
  checkMetadata(meta, what);  // a checkpoint that predates the checksums loads unchecked
  auto metaStr = [&](const char* k) -> const std::string& {
    if (!meta.has(k) || meta.at(k).kind != json::Value::String)
      throw Error(what + ": metadata field '" + k + "' is missing");
    return meta.at(k).str;
  };
  // The model and quantizer must match this trainer.
  json::Value cj = json::parse(metaStr("config"), what + " config");
  if (!cj.has("model") || !cj.has("quant")) throw Error(what + ": config lacks 'model' or 'quant'");
  const json::Value& mj = cj.at("model");
  const ModelConfig& mc = cfg_.model;
  auto num = [&](const json::Value& o, const char* k) {
    if (!o.has(k) || o.at(k).kind != json::Value::Number)
      throw Error(what + ": config field '" + k + "' missing");
    return o.at(k).num;
  };
  std::ostringstream want, got;
  want << "vocab " << mc.vocab << ", dModel " << mc.dModel << ", layers " << mc.layers << ", heads "
       << mc.heads << ", ffn " << mc.ffn << ", quant " << quantName(cfg_.quant);
  got << "vocab " << num(mj, "vocab") << ", dModel " << num(mj, "dModel") << ", layers " << num(mj, "layers")
      << ", heads " << num(mj, "heads") << ", ffn " << num(mj, "ffn") << ", quant " << cj.at("quant").str;
  if (want.str() != got.str())
    throw Error(what + " is for a different model (" + got.str() + "); this trainer has " + want.str());
  // Every other field that changes what the model computes or which windows a step reads.
  const std::pair<const char*, double> same[] = {
      {"seq", mc.seq}, {"ropeTheta", mc.ropeTheta}, {"normEps", mc.normEps}};
  for (const auto& [field, mine] : same)
    if (num(mj, field) != mine)
      throw Error(what + " was trained with " + field + " " + json::number(num(mj, field)) +
                  "; this trainer has " + json::number(mine));
  const std::pair<const char*, double> sameRun[] = {
      {"actBits", cfg_.actBits}, {"batch", cfg_.batch}, {"accum", cfg_.accum}};
  for (const auto& [field, mine] : sameRun)
    if (num(cj, field) != mine && !(otherActBits && std::string(field) == "actBits"))
      throw Error(what + " was trained with " + field + " " + json::number(num(cj, field)) +
                  "; this trainer has " + json::number(mine) +
                  " (the model or its data stream would change)");

  Model& m = *m_;
  const uint64_t dataStart = 8 + hl, dataLen = fileSize - dataStart;
  std::map<std::string, std::vector<char>> data;
  auto readTensor = [&](const std::string& name, const std::string& dtype, std::vector<int64_t> shape) {
    if (!h.has(name)) throw Error(what + " lacks tensor '" + name + "'");
    const json::Value& t = h.at(name);
    if (!t.has("dtype") || t.at("dtype").str != dtype)
      throw Error(what + ": tensor '" + name + "' has dtype " +
                  (t.has("dtype") ? t.at("dtype").str : std::string("?")) + ", expected " + dtype);
    if (!t.has("shape") || t.at("shape").kind != json::Value::Array ||
        t.at("shape").arr.size() != shape.size())
      throw Error(what + ": tensor '" + name + "' has the wrong rank, expected shape " + shapeJson(shape));
    for (size_t i = 0; i < shape.size(); ++i)
      if (t.at("shape").arr[i].num != static_cast<double>(shape[i]))
        throw Error(what + ": tensor '" + name + "' has the wrong shape, expected " + shapeJson(shape));
    if (!t.has("data_offsets") || t.at("data_offsets").arr.size() != 2)
      throw Error(what + ": tensor '" + name + "' lacks data_offsets");
    const double a = t.at("data_offsets").arr[0].num, b = t.at("data_offsets").arr[1].num;
    uint64_t count = 1;
    for (auto d : shape) count *= static_cast<uint64_t>(d);
    const uint64_t bytes = count * dtypeSize(dtype);
    if (!(a >= 0) || b - a != static_cast<double>(bytes) || b > static_cast<double>(dataLen))
      throw Error(what + ": tensor '" + name + "' data lies outside the file (truncated checkpoint?)");
    std::vector<char> buf(bytes);
    f.seekg(static_cast<std::streamoff>(dataStart + static_cast<uint64_t>(a)));
    f.read(buf.data(), static_cast<std::streamsize>(bytes));
    if (!f) throw Error(what + ": reading tensor '" + name + "' failed (truncated checkpoint?)");
    data[name] = std::move(buf);
  };
  for (auto& p : m.params) {
    std::vector<int64_t> sh(p.shape.begin(), p.shape.end());
    for (const char* pre : {"param.", "adam_m.", "adam_v."}) readTensor(pre + p.name, "F32", sh);
  }
  const int nl = static_cast<int>(m.lin.size());
  for (int i = 0; i < nl; ++i)
    if (cfg_.quant == Quant::Poltergeist)
      for (const char* pre : {"code.", "vote."})
        readTensor(pre + layerInfo_[i].name, "I8", {m.lin[i].rows, m.lin[i].cols});
  for (const char* n : {"ghost.scale", "ghost.scale_m", "ghost.scale_v", "ghost.gamma0"})
    readTensor(n, "F32", {nl});
  {
    std::vector<float> sc(nl), scm(nl), scv(nl), g0(nl);
    std::memcpy(sc.data(), data["ghost.scale"].data(), sizeof(float) * nl);
    std::memcpy(scm.data(), data["ghost.scale_m"].data(), sizeof(float) * nl);
    std::memcpy(scv.data(), data["ghost.scale_v"].data(), sizeof(float) * nl);
    std::memcpy(g0.data(), data["ghost.gamma0"].data(), sizeof(float) * nl);
    for (int i = 0; i < nl; ++i) {
      if (!(std::isfinite(sc[i]) && sc[i] > 0) || !(std::isfinite(g0[i]) && g0[i] > 0))
        throw Error(what + ": the Ghost Scale or gamma0 of " + layerInfo_[i].name +
                    " is not a positive finite number");
      if (!std::isfinite(scm[i]) || !(std::isfinite(scv[i]) && scv[i] >= 0))
        throw Error(what + ": the Ghost Scale's Adam moments of " + layerInfo_[i].name + " are not finite");
    }
  }
  for (int i = 0; i < nl && cfg_.quant == Quant::Poltergeist; ++i) {
    for (char c : data["code." + layerInfo_[i].name])
      if (c < -2 || c > 2)
        throw Error(what + ": tensor 'code." + layerInfo_[i].name + "' holds values outside [-2, 2]");
    for (char v : data["vote." + layerInfo_[i].name])
      if (static_cast<signed char>(v) < -127) throw Error(what + ": votes outside [-127, 127]");
  }
  // Knobs and counters.
  const Knobs k = knobsFromJson(metaStr("knobs"), what);
  // Counters must parse completely and stay in range: a checkpoint is never half-trusted.
  auto parseU64 = [&](const char* field, uint64_t max) -> uint64_t {
    const std::string& v = metaStr(field);
    if (v.empty() || v.size() > 20 || v.find_first_not_of("0123456789") != std::string::npos)
      throw Error(what + ": metadata '" + field + "' must be a non-negative integer, got '" + v + "'");
    errno = 0;
    unsigned long long x = std::strtoull(v.c_str(), nullptr, 10);
    if (errno == ERANGE || x > max) throw Error(what + ": metadata '" + field + "' is out of range: " + v);
    return static_cast<uint64_t>(x);
  };
  // Bounded well below INT_MAX: the optimizer counts step + 1 and schedules add to it.
  const long step = static_cast<long>(parseU64("step", 1000000000ull));
  const unsigned long long seed = parseU64("seed", ~0ull);
  char* end = nullptr;
  const std::string& tokS = metaStr("tokens");
  const double tokens = std::strtod(tokS.c_str(), &end);
  if (end == tokS.c_str() || *end != '\0' || !std::isfinite(tokens) || tokens < 0)
    throw Error(what + ": metadata 'tokens' must be a non-negative number, got '" + tokS + "'");
  std::string extra = meta.has("primal.extra") ? meta.at("primal.extra").str : "{}";
  // Checksum over all tensor data, in file order (checkpoints written before it existed have none).
  if (meta.has("dataCrc32")) {
    std::vector<std::pair<uint64_t, const std::vector<char>*>> spans;
    for (auto& kv : h.obj) {
      if (kv.first == "__metadata__" || !data.count(kv.first)) continue;
      spans.push_back({static_cast<uint64_t>(kv.second.at("data_offsets").arr[0].num), &data[kv.first]});
    }
    std::sort(spans.begin(), spans.end());
    uint32_t crc = 0;
    uint64_t expectedAt = 0;
    bool contiguous = true;
    for (auto& sp : spans) {
      contiguous = contiguous && sp.first == expectedAt;
      expectedAt = sp.first + sp.second->size();
      crc = crc32Update(crc, sp.second->data(), sp.second->size());
    }
    if (!contiguous || expectedAt != dataLen || hex8(crc) != metaStr("dataCrc32"))
      throw Error(what +
                  " is damaged: its tensor data does not match the checksum in its header (dataCrc32 " +
                  metaStr("dataCrc32") + ", data has " + hex8(crc) + ")");
  }

  // Everything validated: now replace the state.
  for (auto& p : m.params) {
    const size_t bytes = sizeof(float) * p.n;
    be_->toDevice(p.w, data["param." + p.name].data(), bytes);
    be_->toDevice(p.m, data["adam_m." + p.name].data(), bytes);
    be_->toDevice(p.v, data["adam_v." + p.name].data(), bytes);
  }
  be_->zero(m.gradArena, m.gradArena.bytes());
  be_->zero(m.stepStats, m.stats.accBytes);
  // The Ghost Scale state, into device memory (same tensors as ever).
  for (auto [name, dst] : {std::pair<const char*, float*>{"ghost.scale", m.ghostS()},
                           {"ghost.scale_m", m.ghostM()},
                           {"ghost.scale_v", m.ghostV()},
                           {"ghost.gamma0", m.ghostGamma0()}})
    be_->toDevice(dst, data[name].data(), sizeof(float) * nl);
  for (int i = 0; i < nl; ++i) {
    BitLayer& l = m.lin[i];
    if (cfg_.quant == Quant::Poltergeist) {
      be_->toDevice(l.code, data["code." + layerInfo_[i].name].data(), l.n);
      be_->toDevice(l.vote, data["vote." + layerInfo_[i].name].data(), l.n);
    }
  }
  cfg_.knobs = k;
  cfg_.seed = seed;
  m.cfg = cfg_;
  step_ = static_cast<int>(step);
  tokens_ = tokens;
  accumulated_ = 0;
  explicitStep_ = false;
  be_->sync();
  return extra;
}

CheckpointMetadata readCheckpointMetadata(const std::string& path) {
  const std::string what = "checkpoint '" + path + "'";
  std::ifstream f;
  uint64_t hl = 0, fileSize = 0;
  const json::Value h = readHeader(path, what, 4u << 20, f, hl, fileSize, "a primal checkpoint");
  const json::Value& meta = h.at("__metadata__");
  CheckpointMetadata out;
  out.checked = checkMetadata(meta, what);
  for (const auto& kv : meta.obj) out.fields[kv.first] = kv.second.str;
  return out;
}

}  // namespace primal
