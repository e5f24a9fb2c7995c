// Thin node-addon-api binding over primal::Trainer. It is internal to the package: its caller is
// src/ (the Trainer facade), which validates user input with zod first, so the binding converts
// values without validating them again and leaves ranges and invariants to the core. Every entry
// point still turns failures (the core's, and a value of the wrong JavaScript type) into
// JavaScript exceptions; long work (training, evaluation, generation, checkpoint I/O) runs on a
// worker thread so the JavaScript event loop stays responsive. A per-trainer mutex serializes
// access: a call made while a step runs waits for that step's end.
#include <napi.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "primal/checkpoint.h"
#include "primal/comm.h"
#include "primal/config_fields.h"
#include "primal/error.h"
#include "primal/layer_stats.h"
#include "primal/trainer.h"

namespace {

using primal::Trainer;

// State shared by the JS wrapper and its in-flight workers, so a worker never outlives it.
struct Shared {
  std::unique_ptr<Trainer> trainer;
  std::mutex mu;
  std::atomic<bool> stop{false};
  std::atomic<bool> training{false};
  // The trainer's knobs as of their last change (construction, setKnobs, load, broadcastState, all
  // made under `mu`), so reading them never waits for a running step.
  std::mutex knobsMu;
  primal::Knobs knobs;
  void knobsChanged(const Trainer& t) {
    std::lock_guard<std::mutex> lk(knobsMu);
    knobs = t.knobs();
  }
  primal::Knobs currentKnobs() {
    std::lock_guard<std::mutex> lk(knobsMu);
    return knobs;
  }
};

[[noreturn]] void throwJs(Napi::Env env, const std::string& msg) { throw Napi::Error::New(env, msg); }

double numField(const Napi::Object& o, const char* key, double def, bool required = false,
                const char* prefix = "config.") {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) {
    if (required) throwJs(o.Env(), std::string(prefix) + key + " is required");
    return def;
  }
  if (!v.IsNumber()) throwJs(o.Env(), std::string(prefix) + key + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throwJs(o.Env(), std::string(prefix) + key + " must be finite");
  return d;
}

int intField(const Napi::Object& o, const char* key, int def, bool required = false,
             const char* prefix = "config.") {
  double d = numField(o, key, def, required, prefix);
  if (d != std::floor(d) || std::fabs(d) > 2147483647.0)
    throwJs(o.Env(), std::string(prefix) + key + " must be an integer, got " + std::to_string(d));
  return static_cast<int>(d);
}

// The knobs present in `o` onto `k`, by the core's table. `o` is what zod accepted (src/knobs.ts);
// the core's validate() guards the ranges.
void readKnobs(const Napi::Object& o, primal::Knobs& k) {
  for (const primal::KnobField& f : primal::kKnobFields) {
    Napi::Value v = o.Get(f.name);
    if (v.IsUndefined()) continue;
    if (f.nullable)
      k.*f.nullable = v.IsNull() ? std::nullopt : std::optional<float>(v.As<Napi::Number>().FloatValue());
    else k.*f.value = v.As<Napi::Number>().FloatValue();
  }
}

Napi::Value knobValue(Napi::Env env, std::optional<float> v) {
  return v ? Napi::Value(Napi::Number::New(env, primal::shortestDecimal(*v))) : env.Null();
}

Napi::Object knobsToJs(Napi::Env env, const primal::Knobs& k) {
  Napi::Object o = Napi::Object::New(env);
  for (const primal::KnobField& f : primal::kKnobFields)
    o.Set(f.name, knobValue(env, f.value ? std::optional<float>(k.*f.value) : k.*f.nullable));
  return o;
}

// [{name, nullable, min, max, minOpen, maxOpen, default, doc}]: the table src/knobs.ts builds the
// knobs' zod schema and defaults from.
Napi::Array knobFieldList(Napi::Env env) {
  const primal::Knobs defaults;
  Napi::Array arr = Napi::Array::New(env);
  uint32_t i = 0;
  for (const primal::KnobField& f : primal::kKnobFields) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", f.name);
    d.Set("nullable", f.nullable != nullptr);
    d.Set("min", f.range.min);
    d.Set("max", f.range.max);
    d.Set("minOpen", f.range.minOpen);
    d.Set("maxOpen", f.range.maxOpen);
    d.Set("default",
          knobValue(env, f.value ? std::optional<float>(defaults.*f.value) : defaults.*f.nullable));
    d.Set("doc", f.doc);
    arr.Set(i++, d);
  }
  return arr;
}

// Reads the plain numeric fields of `s` listed in `fields` (config_fields.h); absent ones keep
// their value. Type errors name the field; ranges are the core's validate().
template <typename S, size_t N>
void readNumFields(const Napi::Object& o, S& s, const primal::NumField<S> (&fields)[N], const char* prefix) {
  for (const auto& f : fields) {
    if (f.i) s.*f.i = intField(o, f.name, s.*f.i, f.required, prefix);
    else s.*f.f = static_cast<float>(numField(o, f.name, s.*f.f, f.required, prefix));
  }
}

template <typename S, size_t N>
void writeNumFields(Napi::Object& o, const S& s, const primal::NumField<S> (&fields)[N]) {
  for (const auto& f : fields) {
    if (f.i) o.Set(f.name, s.*f.i);
    else o.Set(f.name, s.*f.f);
  }
}

// config.device: "cpu" (default), "cuda" or "auto" (checked by makeBackend).
std::string readDevice(const Napi::Object& o) {
  Napi::Value dv = o.Get("device");
  if (dv.IsString()) return dv.As<Napi::String>().Utf8Value();
  if (!dv.IsUndefined()) throwJs(o.Env(), "config.device must be 'cpu', 'cuda' or 'auto'");
  return "cpu";
}

// Converts the JS config into a TrainConfig, refusing wrong types (a JS exception naming the
// field). Users' configs arrive validated by the zod schema (src/config.ts); value ranges are
// left to the core's validate().
primal::TrainConfig readConfig(const Napi::Object& o) {
  Napi::Env env = o.Env();
  primal::TrainConfig c;
  Napi::Value mv = o.Get("model");
  if (!mv.IsObject()) throwJs(env, "config.model must be an object {vocab, dModel, layers, heads, ffn, seq}");
  readNumFields(mv.As<Napi::Object>(), c.model, primal::kModelFields, "config.model.");
  Napi::Value q = o.Get("quant");
  if (!q.IsString()) throwJs(env, "config.quant must be one of 'fp', 'ste', 'poltergeist'");
  c.quant = primal::parseQuant(q.As<Napi::String>().Utf8Value());
  Napi::Value ab = o.Get("actBits");
  if (ab.IsNull()) c.actBits = 0;
  else if (ab.IsUndefined()) c.actBits = c.quant == primal::Quant::FP ? 0 : 8;
  else c.actBits = intField(o, "actBits", 8);
  readNumFields(o, c, primal::kTrainFields, "config.");
  Napi::Value mb = o.Get("microBatch");
  if (mb.IsString() && mb.As<Napi::String>().Utf8Value() == "auto") c.microBatch = 0;
  else if (!mb.IsUndefined() && !mb.IsNull()) c.microBatch = intField(o, "microBatch", 0);
  Napi::Value rc = o.Get("recompute");
  if (rc.IsString()) c.recompute = primal::parseRecompute(rc.As<Napi::String>().Utf8Value());
  else if (!rc.IsUndefined() && !rc.IsNull())
    throwJs(env, "config.recompute must be 'none', 'block' or 'auto'");
  Napi::Value mbud = o.Get("memoryBudget");
  if (!mbud.IsUndefined() && !mbud.IsNull()) {
    const double b = numField(o, "memoryBudget", 0);
    if (!(b >= 0) || b > 9007199254740991.0 || b != std::floor(b))
      throwJs(env, "config.memoryBudget must be a whole number of bytes >= 0 (0 = no budget)");
    c.memoryBudget = static_cast<uint64_t>(b);
  }
  Napi::Value sv = o.Get("seed");
  if (!sv.IsUndefined()) {
    double d = numField(o, "seed", 1);
    if (d < 0 || d != std::floor(d) || d > 9007199254740991.0)
      throwJs(env, "config.seed must be a non-negative integer");
    c.seed = static_cast<uint64_t>(d);
  }
  Napi::Value kv = o.Get("knobs");
  if (!kv.IsUndefined()) readKnobs(kv.As<Napi::Object>(), c.knobs);
  return c;  // ranges and invariants: TrainConfig::validate(), run by the Trainer and the planner
}

// The config a trainer gets for every field left out, in the shape readConfig accepts (model
// sizes included, though they are required there): what the TypeScript defaults are tested against.
Napi::Object configDefaults(Napi::Env env) {
  const primal::TrainConfig c;
  Napi::Object model = Napi::Object::New(env);
  writeNumFields(model, c.model, primal::kModelFields);
  Napi::Object o = Napi::Object::New(env);
  o.Set("model", model);
  o.Set("quant", primal::quantName(c.quant));
  o.Set("actBits", c.actBits);
  writeNumFields(o, c, primal::kTrainFields);
  o.Set("microBatch", c.microBatch);
  o.Set("recompute", primal::recomputeName(c.recompute));
  o.Set("memoryBudget", static_cast<double>(c.memoryBudget));
  o.Set("seed", static_cast<double>(c.seed));
  o.Set("knobs", knobsToJs(env, c.knobs));
  return o;
}

// Per-layer telemetry as columns of typed arrays (no per-element JS objects), one per entry of
// primal::kLayerStats.
Napi::Object layerColumns(Napi::Env env, const std::vector<primal::LayerStep>& ls) {
  const size_t n = ls.size();
  Napi::Object o = Napi::Object::New(env);
  for (const auto& stat : primal::kLayerStats) {
    if (stat.type == primal::LayerStatType::F32) {
      Napi::Float32Array a = Napi::Float32Array::New(env, n);
      for (size_t i = 0; i < n; ++i) a[i] = stat.f32(ls[i]);
      o.Set(stat.name, a);
    } else {
      Napi::Int32Array a = Napi::Int32Array::New(env, n);
      for (size_t i = 0; i < n; ++i) a[i] = stat.i32(ls[i]);
      o.Set(stat.name, a);
    }
  }
  return o;
}

// [{name, type}] in column order: the list src/layerStats.ts is tested against.
Napi::Array layerStatList(Napi::Env env) {
  Napi::Array arr = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& stat : primal::kLayerStats) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", stat.name);
    d.Set("type", primal::layerStatTypeName(stat.type));
    arr.Set(i++, d);
  }
  return arr;
}

Napi::Object stepToJs(Napi::Env env, const primal::StepResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("step", r.step);
  o.Set("loss", r.loss);
  o.Set("lr", r.lr);
  o.Set("gradNorm", r.gradNorm);
  o.Set("tokens", r.tokens);
  o.Set("stepMs", r.stepMs);
  o.Set("peakMemoryBytes", static_cast<double>(r.peakBytes));
  o.Set("layers", layerColumns(env, r.layers));
  return o;
}

std::vector<int32_t> tokensArg(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throwJs(v.Env(), std::string(what) + " must be an Int32Array of token ids");
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

// Base for promise-returning workers that hold the trainer lock while they run.
class LockedWorker : public Napi::AsyncWorker {
 public:
  LockedWorker(Napi::Env env, std::shared_ptr<Shared> s)
      : Napi::AsyncWorker(env), s_(std::move(s)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    std::lock_guard<std::mutex> lk(s_->mu);
    if (!s_->trainer) {
      SetError("the trainer has been disposed");
      return;
    }
    try {
      Run(*s_->trainer);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  void OnOK() override { deferred_.Resolve(Result(Env())); }

 protected:
  virtual void Run(Trainer& t) = 0;
  virtual Napi::Value Result(Napi::Env env) = 0;
  std::shared_ptr<Shared> s_;
  Napi::Promise::Deferred deferred_;
};

struct StepPayload {
  primal::StepResult r;
};

class TrainWorker : public Napi::AsyncProgressQueueWorker<StepPayload> {
 public:
  TrainWorker(Napi::Env env, Napi::Function noop, std::shared_ptr<Shared> s, int n, Napi::Value onStep)
      : Napi::AsyncProgressQueueWorker<StepPayload>(noop),
        s_(std::move(s)),
        n_(n),
        deferred_(Napi::Promise::Deferred::New(env)) {
    if (onStep.IsFunction()) onStep_ = Napi::Persistent(onStep.As<Napi::Function>());
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute(const ExecutionProgress& progress) override {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n_; ++i) {
      if (s_->stop.load()) {
        stopped_ = true;
        break;
      }
      StepPayload p;
      {
        std::lock_guard<std::mutex> lk(s_->mu);
        if (!s_->trainer) {
          SetError("the trainer has been disposed");
          return;
        }
        try {
          p.r = s_->trainer->trainStep();
        } catch (const std::exception& e) {
          SetError(e.what());
          return;
        }
        step_ = s_->trainer->step();
      }
      ++done_;
      lastLoss_ = p.r.loss;
      progress.Send(&p, 1);
    }
    seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  void OnProgress(const StepPayload* data, size_t count) override {
    Napi::Env env = Env();
    if (onStep_.IsEmpty()) return;
    Napi::HandleScope scope(env);
    for (size_t i = 0; i < count; ++i) {
      try {
        onStep_.Call({stepToJs(env, data[i].r)});
      } catch (const Napi::Error& e) {
        // A throwing callback stops training at the next boundary; the error is reported.
        callbackError_ = e.Message();
        s_->stop = true;
      }
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    s_->training = false;
    s_->stop = false;
    if (!callbackError_.empty()) {
      deferred_.Reject(Napi::Error::New(env, "onStep callback threw: " + callbackError_).Value());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("steps", done_);
    o.Set("step", step_);
    o.Set("stopped", stopped_);
    o.Set("lastLoss", done_ ? Napi::Value(Napi::Number::New(env, lastLoss_)) : env.Null());
    o.Set("seconds", seconds_);
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override {
    s_->training = false;
    s_->stop = false;
    Napi::Error err = Napi::Error::New(Env(), e.Message());
    err.Set("stepsCompleted", Napi::Number::New(Env(), done_));
    deferred_.Reject(err.Value());
  }

 private:
  std::shared_ptr<Shared> s_;
  int n_;
  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference onStep_;
  int done_ = 0, step_ = 0;
  bool stopped_ = false;
  double lastLoss_ = 0, seconds_ = 0;
  std::string callbackError_;
};

class EvalWorker : public LockedWorker {
 public:
  EvalWorker(Napi::Env env, std::shared_ptr<Shared> s, std::vector<int32_t> tokens, int window)
      : LockedWorker(env, std::move(s)), tokens_(std::move(tokens)), window_(window) {}
  void Run(Trainer& t) override { r_ = t.evaluate(tokens_.data(), tokens_.size(), window_, &s_->stop); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("lossSum", r_.lossSum);
    o.Set("count", r_.count);
    return o;
  }

 private:
  std::vector<int32_t> tokens_;
  int window_;
  Trainer::EvalResult r_;
};

class GenerateWorker : public LockedWorker {
 public:
  GenerateWorker(Napi::Env env, std::shared_ptr<Shared> s, std::vector<int32_t> prompt, int n, float temp,
                 int topK, uint64_t seed)
      : LockedWorker(env, std::move(s)),
        prompt_(std::move(prompt)),
        n_(n),
        temp_(temp),
        topK_(topK),
        seed_(seed) {}
  void Run(Trainer& t) override { out_ = t.generate(prompt_, n_, temp_, topK_, seed_); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Int32Array a = Napi::Int32Array::New(env, out_.size());
    for (size_t i = 0; i < out_.size(); ++i) a[i] = out_[i];
    return a;
  }

 private:
  std::vector<int32_t> prompt_, out_;
  int n_;
  float temp_;
  int topK_;
  uint64_t seed_;
};

class SaveWorker : public LockedWorker {
 public:
  SaveWorker(Napi::Env env, std::shared_ptr<Shared> s, std::string path, std::string extra)
      : LockedWorker(env, std::move(s)), path_(std::move(path)), extra_(std::move(extra)) {}
  void Run(Trainer& t) override { t.save(path_, extra_); }
  Napi::Value Result(Napi::Env env) override { return Napi::String::New(env, path_); }

 private:
  std::string path_, extra_;
};

class LoadWorker : public LockedWorker {
 public:
  LoadWorker(Napi::Env env, std::shared_ptr<Shared> s, std::string path, bool otherActBits)
      : LockedWorker(env, std::move(s)), path_(std::move(path)), otherActBits_(otherActBits) {}
  void Run(Trainer& t) override {
    extra_ = t.load(path_, otherActBits_);
    s_->knobsChanged(t);
  }
  Napi::Value Result(Napi::Env env) override { return Napi::String::New(env, extra_); }

 private:
  std::string path_, extra_;
  bool otherActBits_;
};

class NativeTrainer : public Napi::ObjectWrap<NativeTrainer> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeTrainer",
                       {InstanceMethod("setTrainData", &NativeTrainer::SetTrainData),
                        InstanceMethod("train", &NativeTrainer::Train),
                        InstanceMethod("stop", &NativeTrainer::Stop),
                        InstanceMethod("isTraining", &NativeTrainer::IsTraining),
                        InstanceMethod("setKnobs", &NativeTrainer::SetKnobs),
                        InstanceMethod("getKnobs", &NativeTrainer::GetKnobs),
                        InstanceMethod("info", &NativeTrainer::Info),
                        InstanceMethod("layerStats", &NativeTrainer::LayerStats),
                        InstanceMethod("codes", &NativeTrainer::Codes),
                        InstanceMethod("votes", &NativeTrainer::Votes),
                        InstanceMethod("flipProbabilities", &NativeTrainer::FlipProbabilities),
                        InstanceMethod("weights", &NativeTrainer::Weights),
                        InstanceMethod("setCodes", &NativeTrainer::SetCodes),
                        InstanceMethod("setVotes", &NativeTrainer::SetVotes),
                        InstanceMethod("scales", &NativeTrainer::Scales),
                        InstanceMethod("scaleGrads", &NativeTrainer::ScaleGrads),
                        InstanceMethod("setScale", &NativeTrainer::SetScale),
                        InstanceMethod("gamma0", &NativeTrainer::Gamma0),
                        InstanceMethod("memory", &NativeTrainer::Memory),
                        InstanceMethod("accumulate", &NativeTrainer::Accumulate),
                        InstanceMethod("applyStep", &NativeTrainer::ApplyStep),
                        InstanceMethod("batchLoss", &NativeTrainer::BatchLoss),
                        InstanceMethod("evaluate", &NativeTrainer::Evaluate),
                        InstanceMethod("generate", &NativeTrainer::Generate),
                        InstanceMethod("save", &NativeTrainer::Save),
                        InstanceMethod("load", &NativeTrainer::Load),
                        InstanceMethod("broadcastState", &NativeTrainer::BroadcastState),
                        InstanceMethod("dispose", &NativeTrainer::Dispose),
                        InstanceMethod("logits", &NativeTrainer::Logits)});
  }

  explicit NativeTrainer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTrainer>(info) {
    Napi::Env env = info.Env();
    s_ = std::make_shared<Shared>();
    if (info.Length() < 1 || !info[0].IsObject())
      throwJs(env, "NativeTrainer(config): config object required");
    Napi::Object o = info[0].As<Napi::Object>();
    std::string device = readDevice(o);
    int threads = intField(o, "threads", 0);
    Napi::Value dist = o.Get("distributed");
    if (!dist.IsUndefined() && !dist.IsNull() && !dist.IsString())
      throwJs(env, "config.distributed must be 'mpi' or 'nccl'");
    try {
      primal::TrainConfig cfg = readConfig(o);
      // Data parallel (docs/distributed.md): join the ranks first; NCCL ranks take the GPU of
      // their local rank.
      std::shared_ptr<primal::Communicator> comm;
      if (dist.IsString()) {
        comm = primal::makeCommunicator(dist.As<Napi::String>().Utf8Value());
        if (comm->deviceMemory() && (device == "cuda" || device == "auto"))
          device = "cuda:" + std::to_string(comm->localRank());
      }
      s_->trainer = std::make_unique<Trainer>(cfg, device, threads);
      if (comm) s_->trainer->setCommunicator(comm);
      s_->knobsChanged(*s_->trainer);
    } catch (const Napi::Error&) {
      throw;
    } catch (const std::exception& e) {
      throwJs(env, e.what());
    }
  }

 private:
  std::shared_ptr<Shared> s_;

  Trainer& T(Napi::Env env) {
    if (!s_->trainer) throwJs(env, "the trainer has been disposed");
    return *s_->trainer;
  }

  // Runs f with the trainer lock held (waits for a running step to finish).
  template <typename F>
  auto Locked(Napi::Env env, F&& f) -> decltype(f(std::declval<Trainer&>())) {
    std::lock_guard<std::mutex> lk(s_->mu);
    try {
      return f(T(env));
    } catch (const Napi::Error&) {
      throw;
    } catch (const std::exception& e) {
      throwJs(env, e.what());
    }
  }

  int LayerArg(const Napi::CallbackInfo& info, Trainer& t) {
    if (info.Length() < 1) throwJs(info.Env(), "layer name or index required");
    if (info[0].IsString()) return t.layerIndex(info[0].As<Napi::String>().Utf8Value());
    if (info[0].IsNumber()) {
      double d = info[0].As<Napi::Number>().DoubleValue();
      if (d != std::floor(d)) throw primal::Error("layer index must be an integer, got " + std::to_string(d));
      if (d < 0 || d >= static_cast<double>(t.layers().size()))
        throw primal::Error("layer index out of range [0, " + std::to_string(t.layers().size()) + ")");
      return static_cast<int>(d);
    }
    throwJs(info.Env(), "layer must be a name like 'blocks.0.mlp.up' or an index");
  }

  void RejectIfTraining(Napi::Env env, const char* what) {
    if (s_->training.load())
      throwJs(env, std::string(what) + ": the trainer is training; call stop() and await train() first");
  }

  Napi::Value SetTrainData(const Napi::CallbackInfo& info) {
    RejectIfTraining(info.Env(), "setTrainData");
    if (info.Length() < 1) throwJs(info.Env(), "setTrainData(tokens: Int32Array) requires tokens");
    auto toks = tokensArg(info[0], "tokens");
    Locked(info.Env(), [&](Trainer& t) { t.setTrainData(std::move(toks)); });
    return info.Env().Undefined();
  }

  Napi::Value Train(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) throwJs(env, "train(n, onStep?) requires a step count");
    double n = info[0].As<Napi::Number>().DoubleValue();
    if (!(n >= 0) || n != std::floor(n) || n > 1e9) throwJs(env, "train: n must be a non-negative integer");
    if (!s_->trainer) throwJs(env, "the trainer has been disposed");
    if (s_->training.exchange(true)) throwJs(env, "train: this trainer is already training");
    s_->stop = false;
    Napi::Function noop = Napi::Function::New(env, [](const Napi::CallbackInfo&) {});
    auto* w =
        new TrainWorker(env, noop, s_, static_cast<int>(n), info.Length() > 1 ? info[1] : env.Undefined());
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    s_->stop = true;
    return Napi::Boolean::New(info.Env(), s_->training.load());
  }

  Napi::Value IsTraining(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), s_->training.load());
  }

  // setKnobs(knobs): the knobs present change (all or none: the core validates the whole set);
  // returns every knob as the core now holds it.
  Napi::Value SetKnobs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Locked(env, [&](Trainer& t) {
      primal::Knobs k = t.knobs();
      readKnobs(info[0].As<Napi::Object>(), k);
      t.setKnobs(k);
      s_->knobsChanged(t);
      return Napi::Value(knobsToJs(env, t.knobs()));
    });
  }

  // The knobs in force, without waiting for a running step (they cannot change during one).
  Napi::Value GetKnobs(const Napi::CallbackInfo& info) {
    if (!s_->trainer) throwJs(info.Env(), "the trainer has been disposed");
    return knobsToJs(info.Env(), s_->currentKnobs());
  }

  // Every rank takes rank `root`'s training state (a resume loads on one rank). Collective.
  Napi::Value BroadcastState(const Napi::CallbackInfo& info) {
    RejectIfTraining(info.Env(), "broadcastState");
    const int root = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    Locked(info.Env(), [&](Trainer& t) {
      t.broadcastState(root);
      s_->knobsChanged(t);
    });
    return info.Env().Undefined();
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Locked(env, [&](Trainer& t) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("step", t.step());
      o.Set("tokens", t.tokensSeen());
      o.Set("device", t.deviceName());
      o.Set("backend", t.backend().name());
      o.Set("quant", primal::quantName(t.config().quant));
      o.Set("paramCount", static_cast<double>(t.paramCount()));
      o.Set("trainTokens", static_cast<double>(t.trainTokens()));
      o.Set("microBatch", t.config().microBatch);
      o.Set("recompute", primal::recomputeName(t.config().recompute));
      o.Set("chunksPerStep", t.chunksPerStep());
      o.Set("plannedBytes", static_cast<double>(t.plannedBytes()));
      o.Set("rank", t.rank());
      o.Set("worldSize", t.worldSize());
      o.Set("distributed",
            t.communicator() ? Napi::Value(Napi::String::New(env, t.communicator()->backend())) : env.Null());
      Napi::Array ls = Napi::Array::New(env, t.layers().size());
      for (size_t i = 0; i < t.layers().size(); ++i) {
        Napi::Object l = Napi::Object::New(env);
        l.Set("name", t.layers()[i].name);
        l.Set("rows", t.layers()[i].rows);
        l.Set("cols", t.layers()[i].cols);
        ls.Set(static_cast<uint32_t>(i), l);
      }
      o.Set("layers", ls);
      return Napi::Value(o);
    });
  }

  Napi::Value LayerStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Locked(env, [&](Trainer& t) { return Napi::Value(layerColumns(env, t.layerStats())); });
  }

  template <typename V, typename A>
  static Napi::Value ToTyped(Napi::Env env, const std::vector<V>& v) {
    A a = A::New(env, v.size());
    if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(V));
    return a;
  }

  Napi::Value Codes(const Napi::CallbackInfo& info) {
    return Locked(info.Env(), [&](Trainer& t) {
      return ToTyped<int8_t, Napi::Int8Array>(info.Env(), t.codes(LayerArg(info, t)));
    });
  }
  Napi::Value Votes(const Napi::CallbackInfo& info) {
    return Locked(info.Env(), [&](Trainer& t) {
      return ToTyped<int8_t, Napi::Int8Array>(info.Env(), t.votes(LayerArg(info, t)));
    });
  }
  Napi::Value FlipProbabilities(const Napi::CallbackInfo& info) {
    return Locked(info.Env(), [&](Trainer& t) {
      return ToTyped<float, Napi::Float32Array>(info.Env(), t.flipProbabilities(LayerArg(info, t)));
    });
  }
  Napi::Value Weights(const Napi::CallbackInfo& info) {
    return Locked(info.Env(), [&](Trainer& t) {
      return ToTyped<float, Napi::Float32Array>(info.Env(), t.weights(LayerArg(info, t)));
    });
  }

  static std::vector<int8_t> Int8Arg(const Napi::CallbackInfo& info, size_t idx, const char* what) {
    if (info.Length() <= idx || !info[idx].IsTypedArray() ||
        info[idx].As<Napi::TypedArray>().TypedArrayType() != napi_int8_array)
      throwJs(info.Env(), std::string(what) + " must be an Int8Array");
    Napi::Int8Array a = info[idx].As<Napi::Int8Array>();
    return std::vector<int8_t>(a.Data(), a.Data() + a.ElementLength());
  }

  Napi::Value SetCodes(const Napi::CallbackInfo& info) {
    RejectIfTraining(info.Env(), "setCodes");
    auto v = Int8Arg(info, 1, "codes");
    Locked(info.Env(), [&](Trainer& t) { t.setCodes(LayerArg(info, t), v); });
    return info.Env().Undefined();
  }
  Napi::Value SetVotes(const Napi::CallbackInfo& info) {
    RejectIfTraining(info.Env(), "setVotes");
    auto v = Int8Arg(info, 1, "votes");
    Locked(info.Env(), [&](Trainer& t) { t.setVotes(LayerArg(info, t), v); });
    return info.Env().Undefined();
  }
  Napi::Value Scales(const Napi::CallbackInfo& info) {
    return Locked(info.Env(),
                  [&](Trainer& t) { return ToTyped<float, Napi::Float32Array>(info.Env(), t.scales()); });
  }
  Napi::Value ScaleGrads(const Napi::CallbackInfo& info) {
    return Locked(info.Env(),
                  [&](Trainer& t) { return ToTyped<float, Napi::Float32Array>(info.Env(), t.scaleGrads()); });
  }
  Napi::Value Gamma0(const Napi::CallbackInfo& info) {
    return Locked(info.Env(),
                  [&](Trainer& t) { return ToTyped<float, Napi::Float32Array>(info.Env(), t.gamma0()); });
  }
  Napi::Value SetScale(const Napi::CallbackInfo& info) {
    RejectIfTraining(info.Env(), "setScale");
    if (info.Length() < 2 || !info[1].IsNumber()) throwJs(info.Env(), "setScale(layer, s) requires a number");
    float s = info[1].As<Napi::Number>().FloatValue();
    Locked(info.Env(), [&](Trainer& t) { t.setScale(LayerArg(info, t), s); });
    return info.Env().Undefined();
  }

  Napi::Value Memory(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Locked(env, [&](Trainer& t) {
      primal::MemoryReport m = t.memory();
      Napi::Object o = Napi::Object::New(env);
      o.Set("params", static_cast<double>(m.params));
      o.Set("optimizer", static_cast<double>(m.optimizer));
      o.Set("grads", static_cast<double>(m.grads));
      o.Set("ternaryState", static_cast<double>(m.ternaryState));
      o.Set("ternaryWeights", static_cast<double>(m.ternaryWeights));
      o.Set("activations", static_cast<double>(m.activations));
      o.Set("scratch", static_cast<double>(m.scratch));
      o.Set("deviceInUse", static_cast<double>(m.deviceInUse));
      o.Set("devicePeak", static_cast<double>(m.devicePeak));
      o.Set("planned", static_cast<double>(t.plannedBytes()));
      return Napi::Value(o);
    });
  }

  Napi::Value Accumulate(const Napi::CallbackInfo& info) {
    RejectIfTraining(info.Env(), "accumulate");
    return Locked(info.Env(),
                  [&](Trainer& t) { return Napi::Value(Napi::Number::New(info.Env(), t.accumulate())); });
  }
  Napi::Value ApplyStep(const Napi::CallbackInfo& info) {
    RejectIfTraining(info.Env(), "applyStep");
    return Locked(info.Env(), [&](Trainer& t) { return Napi::Value(stepToJs(info.Env(), t.applyStep())); });
  }
  Napi::Value BatchLoss(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RejectIfTraining(env, "batchLoss");
    if (info.Length() < 4) throwJs(env, "batchLoss(inputs, targets, B, T)");
    auto in = tokensArg(info[0], "inputs");
    auto tg = tokensArg(info[1], "targets");
    int B = info[2].ToNumber().Int32Value(), Tn = info[3].ToNumber().Int32Value();
    if (in.size() != static_cast<size_t>(B) * Tn || tg.size() != in.size())
      throwJs(env, "batchLoss: inputs and targets must both hold B*T tokens");
    return Locked(env, [&](Trainer& t) {
      return Napi::Value(Napi::Number::New(env, t.batchLoss(in.data(), tg.data(), B, Tn)));
    });
  }

  Napi::Value Evaluate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RejectIfTraining(env, "evaluate");
    if (!s_->trainer) throwJs(env, "the trainer has been disposed");
    if (info.Length() < 1) throwJs(env, "evaluate(tokens, window?) requires tokens");
    auto toks = tokensArg(info[0], "tokens");
    int window = 0;
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      double d = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 1) || d != std::floor(d) || d > 1e6)
        throwJs(env, "evaluate: window must be a positive integer (at most seq)");
      window = static_cast<int>(d);
    }
    s_->stop = false;  // a stop() that came while idle must not cancel this evaluation
    auto* w = new EvalWorker(env, s_, std::move(toks), window);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  Napi::Value Generate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RejectIfTraining(env, "generate");
    if (!s_->trainer) throwJs(env, "the trainer has been disposed");
    if (info.Length() < 2) throwJs(env, "generate(prompt: Int32Array, n, temperature?, topK?, seed?)");
    auto prompt = tokensArg(info[0], "prompt");
    auto intArg = [&](size_t i, const char* what, double def) {
      if (info.Length() <= i || info[i].IsUndefined()) return def;
      double d = info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 0) || d != std::floor(d) || d > 1e9)
        throwJs(env, std::string("generate: ") + what + " must be a non-negative integer");
      return d;
    };
    int n = static_cast<int>(intArg(1, "n", 0));
    double tempD = 1.0;
    if (info.Length() > 2 && !info[2].IsUndefined()) {
      tempD = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : -1;
      if (!(tempD >= 0) || !std::isfinite(tempD))
        throwJs(env, "generate: temperature must be a finite number >= 0");
    }
    float temp = static_cast<float>(tempD);
    int topK = static_cast<int>(intArg(3, "topK", 0));
    double seed = 0;
    if (info.Length() > 4 && !info[4].IsUndefined()) {
      seed = info[4].IsNumber() ? info[4].As<Napi::Number>().DoubleValue() : -1;
      if (!(seed >= 0) || seed != std::floor(seed) || seed > 9007199254740991.0)
        throwJs(env, "generate: seed must be a non-negative integer");
    }
    auto* w = new GenerateWorker(env, s_, std::move(prompt), n, temp, topK, static_cast<uint64_t>(seed));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  Napi::Value Save(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!s_->trainer) throwJs(env, "the trainer has been disposed");
    if (info.Length() < 1 || !info[0].IsString()) throwJs(env, "save(path, extraJson?) requires a path");
    std::string extra =
        info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "{}";
    auto* w = new SaveWorker(env, s_, info[0].As<Napi::String>().Utf8Value(), extra);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  Napi::Value Load(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RejectIfTraining(env, "load");
    if (!s_->trainer) throwJs(env, "the trainer has been disposed");
    if (info.Length() < 1 || !info[0].IsString()) throwJs(env, "load(path, options?) requires a path");
    bool otherActBits = false;
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      if (!info[1].IsObject()) throwJs(env, "load: options must be an object { otherActBits?: boolean }");
      Napi::Value v = info[1].As<Napi::Object>().Get("otherActBits");
      if (!v.IsUndefined() && !v.IsBoolean()) throwJs(env, "load: options.otherActBits must be a boolean");
      otherActBits = v.IsBoolean() && v.As<Napi::Boolean>().Value();
    }
    auto* w = new LoadWorker(env, s_, info[0].As<Napi::String>().Utf8Value(), otherActBits);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    RejectIfTraining(info.Env(), "dispose");
    std::lock_guard<std::mutex> lk(s_->mu);
    s_->trainer.reset();
    return info.Env().Undefined();
  }

  // logits(tokens): next-token logits [T * vocab] at every position of one window (T <= seq).
  Napi::Value Logits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RejectIfTraining(env, "logits");
    if (info.Length() < 1) throwJs(env, "logits(tokens)");
    auto toks = tokensArg(info[0], "tokens");
    return Locked(env, [&](Trainer& t) {
      return ToTyped<float, Napi::Float32Array>(env, t.logits(toks.data(), static_cast<int>(toks.size())));
    });
  }
};

Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("built", primal::cudaBuilt());
  int n = 0;
  try {
    n = primal::cudaDeviceCount();
  } catch (const std::exception&) {
    n = 0;
  }
  o.Set("devices", n);
  return o;
}

// planMemory(config): every execution plan the trainer would consider for this config and
// device, with its predicted peak, and the index of the one it would pick (-1: none fits).
Napi::Value PlanMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throwJs(env, "planMemory(config): config object required");
  Napi::Object o = info[0].As<Napi::Object>();
  const std::string device = readDevice(o);
  try {
    primal::TrainConfig cfg = readConfig(o);
    auto be = primal::makeBackend(device, 1);
    primal::MemoryPlanning pl = primal::planMemory(cfg, *be);
    Napi::Object out = Napi::Object::New(env);
    out.Set("device", be->describe());
    out.Set("budget", static_cast<double>(cfg.memoryBudget));
    out.Set("chosen", pl.chosen);
    Napi::Array arr = Napi::Array::New(env, pl.candidates.size());
    for (size_t i = 0; i < pl.candidates.size(); ++i) {
      const primal::MemoryPlan& p = pl.candidates[i];
      Napi::Object c = Napi::Object::New(env);
      c.Set("microBatch", p.microBatch);
      c.Set("recompute", primal::recomputeName(p.recompute));
      c.Set("totalBytes", static_cast<double>(p.totalBytes));
      c.Set("fits", p.fits);
      c.Set("params", static_cast<double>(p.estimate.params));
      c.Set("optimizer", static_cast<double>(p.estimate.optimizer));
      c.Set("grads", static_cast<double>(p.estimate.grads));
      c.Set("ternaryState", static_cast<double>(p.estimate.ternaryState));
      c.Set("activations", static_cast<double>(p.estimate.activations));
      c.Set("scratch", static_cast<double>(p.estimate.scratch));
      c.Set("backendScratch", static_cast<double>(p.backendScratch));
      arr.Set(static_cast<uint32_t>(i), c);
    }
    out.Set("candidates", arr);
    // Bytes each data-parallel rank all-reduces per step (config.worldSize ranks, default 1).
    const int world = intField(o, "worldSize", 1);
    const primal::WireBytes w = primal::wireBytesPerStep(
        pl.chosen >= 0 ? [&] { auto c = cfg; c.microBatch = pl.candidates[pl.chosen].microBatch; return c; }() : cfg,
        std::max(1, world));
    Napi::Object wire = Napi::Object::New(env);
    wire.Set("worldSize", std::max(1, world));
    wire.Set("grads", static_cast<double>(w.grads));
    wire.Set("scalars", static_cast<double>(w.scalars));
    wire.Set("votes", static_cast<double>(w.votes));
    wire.Set("voteType", w.int32Votes ? "int32" : "int8");
    wire.Set("total", static_cast<double>(w.total));
    out.Set("wire", wire);
    return out;
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throwJs(env, e.what());
  }
}

// checkpointMetadata(path): {checked, fields} of a checkpoint's header, its metadata checksums
// verified (src/resumeCheckpoint.ts reads the checked config before it builds a trainer). The
// caller has made sure `path` is a regular file; only the header is read.
Napi::Value CheckpointMetadata(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    const primal::CheckpointMetadata m =
        primal::readCheckpointMetadata(info[0].As<Napi::String>().Utf8Value());
    Napi::Object fields = Napi::Object::New(env);
    for (const auto& kv : m.fields) fields.Set(kv.first, kv.second);
    Napi::Object o = Napi::Object::New(env);
    o.Set("checked", m.checked);
    o.Set("fields", fields);
    return o;
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throwJs(env, e.what());
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("planMemory", Napi::Function::New(env, PlanMemory));
  exports.Set("NativeTrainer", NativeTrainer::Init(env));
  exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo));
  exports.Set("version", Napi::String::New(env, primal::coreVersion()));
  exports.Set("layerStats", layerStatList(env));
  exports.Set("configDefaults", configDefaults(env));
  exports.Set("knobFields", knobFieldList(env));
  exports.Set("checkpointMetadata", Napi::Function::New(env, CheckpointMetadata));
  exports.Set("communicators", Napi::String::New(env, primal::communicatorsBuilt()));
  return exports;
}

}  // namespace

NODE_API_MODULE(primal_native, Init)
