#include "clip/weights.h"

#include <torch/script.h>  // TorchScript archives: only this file pays for the JIT headers

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "common/safetensors.h"
#include "common/errors.h"
#include "common/json.h"

namespace fs = std::filesystem;

namespace ipclip {

const char* formatName(WeightsFormat f) {
  switch (f) {
    case WeightsFormat::OpenAiSafetensors: return "openai-safetensors";
    case WeightsFormat::HuggingFace: return "huggingface";
    case WeightsFormat::TorchScript: return "torchscript";
  }
  return "unknown";
}

namespace {

torch::Dtype torchDtype(DType d, const std::string& name, const std::string& source) {
  switch (d) {
    case DType::F32: return torch::kFloat32;
    case DType::F16: return torch::kFloat16;
    case DType::BF16: return torch::kBFloat16;
    case DType::F64: return torch::kFloat64;
    case DType::I64: return torch::kInt64;
    case DType::I32: return torch::kInt32;
    case DType::I16: return torch::kInt16;
    case DType::I8: return torch::kInt8;
    case DType::U8: return torch::kUInt8;
    case DType::BOOL: return torch::kBool;
  }
  fail("ERR_BAD_WEIGHTS", source + ": tensor '" + name + "' has an unsupported dtype");
}

StateDict readSafetensors(const std::string& path) {
  auto file = SafetensorsFile::open(path);
  StateDict out;
  for (const auto& v : file.tensors()) {
    // Copy rather than wrap: the file's bytes are freed when `file` goes, and they may be unaligned.
    auto t = torch::empty(v.shape, torch::TensorOptions().dtype(torchDtype(v.dtype, v.name, path)));
    if (v.nbytes) std::memcpy(t.data_ptr(), v.data, v.nbytes);
    out.emplace(v.name, std::move(t));
  }
  return out;
}

bool startsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

bool looksLikeZip(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {0, 0, 0, 0};
  in.read(magic, 4);
  return in.gcount() == 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4;
}

StateDict readTorchScript(const std::string& path) {
  // A TorchScript archive is a program: loading it runs no Python, but it is trusted to be a model
  // (docs/security.md). We only read its parameters and buffers; nothing of it is executed.
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, torch::kCPU);
  } catch (const c10::Error& e) {
    fail("ERR_BAD_FILE", path + ": not a readable TorchScript archive: " + e.what_without_backtrace());
  }
  StateDict out;
  for (const auto& p : module.named_parameters(true)) out.emplace(p.name, p.value.detach().clone());
  for (const auto& b : module.named_buffers(true)) out.emplace(b.name, b.value.detach().clone());
  return out;
}

// Hugging Face CLIPModel names → OpenAI names. q/k/v are fused, projections transposed.
StateDict fromHuggingFace(const StateDict& hf, const std::string& source) {
  StateDict out;
  std::map<std::string, std::array<torch::Tensor, 3>> qkvWeight, qkvBias;
  static const std::regex layerRe(R"(^(vision|text)_model\.encoder\.layers\.(\d+)\.(.+)$)");
  static const std::map<std::string, std::string> inLayer = {
      {"layer_norm1.weight", "ln_1.weight"}, {"layer_norm1.bias", "ln_1.bias"},
      {"layer_norm2.weight", "ln_2.weight"}, {"layer_norm2.bias", "ln_2.bias"},
      {"mlp.fc1.weight", "mlp.c_fc.weight"}, {"mlp.fc1.bias", "mlp.c_fc.bias"},
      {"mlp.fc2.weight", "mlp.c_proj.weight"}, {"mlp.fc2.bias", "mlp.c_proj.bias"},
      {"self_attn.out_proj.weight", "attn.out_proj.weight"}, {"self_attn.out_proj.bias", "attn.out_proj.bias"}};
  static const std::map<std::string, std::string> direct = {
      {"vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"},
      {"vision_model.embeddings.class_embedding", "visual.class_embedding"},
      {"vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"},
      {"vision_model.pre_layrnorm.weight", "visual.ln_pre.weight"},  // sic: HF's spelling
      {"vision_model.pre_layrnorm.bias", "visual.ln_pre.bias"},
      {"vision_model.pre_layernorm.weight", "visual.ln_pre.weight"},
      {"vision_model.pre_layernorm.bias", "visual.ln_pre.bias"},
      {"vision_model.post_layernorm.weight", "visual.ln_post.weight"},
      {"vision_model.post_layernorm.bias", "visual.ln_post.bias"},
      {"text_model.embeddings.token_embedding.weight", "token_embedding.weight"},
      {"text_model.embeddings.position_embedding.weight", "positional_embedding"},
      {"text_model.final_layer_norm.weight", "ln_final.weight"},
      {"text_model.final_layer_norm.bias", "ln_final.bias"},
      {"logit_scale", "logit_scale"}};
  for (const auto& [name, t] : hf) {
    if (auto it = direct.find(name); it != direct.end()) { out[it->second] = t; continue; }
    if (name == "visual_projection.weight") { out["visual.proj"] = t.t().contiguous(); continue; }
    if (name == "text_projection.weight") { out["text_projection"] = t.t().contiguous(); continue; }
    std::smatch m;
    if (!std::regex_match(name, m, layerRe)) continue;  // position_ids and other extras
    const std::string prefix = (m[1] == "vision" ? "visual.transformer.resblocks." : "transformer.resblocks.") +
                               m[2].str() + ".";
    const std::string rest = m[3];
    if (auto it = inLayer.find(rest); it != inLayer.end()) { out[prefix + it->second] = t; continue; }
    static const std::regex qkvRe(R"(^self_attn\.([qkv])_proj\.(weight|bias)$)");
    std::smatch q;
    if (std::regex_match(rest, q, qkvRe)) {
      const int slot = q[1] == "q" ? 0 : q[1] == "k" ? 1 : 2;
      (q[2] == "weight" ? qkvWeight : qkvBias)[prefix][slot] = t;
    }
  }
  auto fuse = [&](auto& parts, const char* what) {
    for (auto& [prefix, p] : parts) {
      for (int i = 0; i < 3; ++i)
        if (!p[i].defined())
          fail("ERR_BAD_WEIGHTS", source + ": missing " + std::string("qkv"[i] == 'q' ? "q" : i == 1 ? "k" : "v") +
                                      "_proj." + what + " for " + prefix);
      out[prefix + "attn.in_proj_" + what] = torch::cat({p[0], p[1], p[2]}, 0);
    }
  };
  fuse(qkvWeight, "weight");
  fuse(qkvBias, "bias");
  return out;
}

bool hasHuggingFaceNames(const StateDict& sd) {
  for (const auto& [k, _] : sd)
    if (startsWith(k, "vision_model.") || startsWith(k, "text_model.")) return true;
  return false;
}

// A config file as JSON, or nullopt when there is none. Bounded: configs are small.
std::optional<json::Value> readJsonConfig(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > (1 << 20)) fail("ERR_BAD_FILE", file.string() + ": " + file.filename().string() + " is larger than 1 MiB");
  try {
    return json::parse(text);
  } catch (const json::ParseError& e) {
    fail("ERR_BAD_FILE", file.string() + ": invalid JSON: " + e.what());
  }
}

// Hugging Face's `hidden_act` names. Anything else is refused: a silently wrong nonlinearity gives features
// that look plausible and are wrong.
Activation parseHiddenAct(const json::Value& v, const std::string& where) {
  if (v.isString() && v.text() == "quick_gelu") return Activation::QuickGelu;
  if (v.isString() && v.text() == "gelu") return Activation::Gelu;
  fail("ERR_BAD_WEIGHTS", where + " is " + (v.isString() ? "'" + v.text() + "'" : std::string("not a string")) +
                              ": supported activations are 'quick_gelu' and 'gelu'");
}

// The activations a config gives, per tower:
//   Hugging Face: {vision_config: {hidden_act}, text_config: {hidden_act}} (absent: quick_gelu, HF's default);
//   open_clip: {model_cfg: {quick_gelu, vision_cfg, text_cfg}} (open_clip_config.json) or the bare model config
//   {quick_gelu, vision_cfg, text_cfg}: one flag for both towers, absent meaning GELU as in open_clip.
// A tower a config has already set is kept.
void readActivations(const json::Value& cfg, const std::string& source, LoadedWeights& w) {
  for (auto [section, slot] : {std::pair{"vision_config", &w.visionActivation}, std::pair{"text_config", &w.textActivation}}) {
    const auto* sec = cfg.get(section);
    const auto* act = sec ? sec->get("hidden_act") : nullptr;
    if (act && !*slot) *slot = parseHiddenAct(*act, source + ": " + section + ".hidden_act");
  }
  const json::Value* model = cfg.get("model_cfg");
  if (!model && (cfg.get("vision_cfg") || cfg.get("text_cfg"))) model = &cfg;
  if (!model || !model->isObject()) return;
  Activation a = Activation::Gelu;
  if (const auto* q = model->get("quick_gelu")) {
    if (!q->isBool())
      fail("ERR_BAD_WEIGHTS", source + ": " + (model == &cfg ? "" : "model_cfg.") + "quick_gelu must be true or false");
    a = q->boolValue() ? Activation::QuickGelu : Activation::Gelu;
  }
  if (!w.visionActivation) w.visionActivation = a;
  if (!w.textActivation) w.textActivation = a;
}

// open_clip's hub layout keeps its config in open_clip_config.json beside the weights.
void readOpenClipConfig(const fs::path& file, LoadedWeights& w) {
  if (auto cfg = readJsonConfig(file)) readActivations(*cfg, file.string(), w);
}

void readHfConfig(const fs::path& file, LoadedWeights& w) {
  auto parsed = readJsonConfig(file);
  if (!parsed) return;
  const json::Value& cfg = *parsed;
  readActivations(cfg, file.string(), w);
  auto positive = [](const json::Value* h) -> std::optional<int64_t> {
    int64_t v = 0;
    if (h && h->toInt64(v) && v > 0 && v <= 4096) return v;
    return std::nullopt;
  };
  // Hugging Face: {vision_config: {num_attention_heads}}; OpenAI-style (clip-config.json, our models/):
  // {vision_heads, transformer_heads}.
  auto hfHeads = [&](const char* section) -> std::optional<int64_t> {
    const auto* sec = cfg.get(section);
    return positive(sec ? sec->get("num_attention_heads") : nullptr);
  };
  w.visionHeads = hfHeads("vision_config");
  w.textHeads = hfHeads("text_config");
  if (!w.visionHeads) w.visionHeads = positive(cfg.get("vision_heads"));
  if (!w.textHeads) w.textHeads = positive(cfg.get("transformer_heads"));
}

const torch::Tensor& need(const StateDict& sd, const std::string& key, const std::string& source) {
  auto it = sd.find(key);
  if (it == sd.end()) fail("ERR_BAD_WEIGHTS", source + ": missing tensor '" + key + "'");
  return it->second;
}

int64_t countLayers(const StateDict& sd, const std::string& prefix) {
  std::set<int64_t> layers;
  const std::regex re("^" + std::regex_replace(prefix, std::regex(R"(\.)"), R"(\.)") + R"((\d+)\.attn\.in_proj_weight$)");
  for (const auto& [k, _] : sd) {
    std::smatch m;
    if (std::regex_match(k, m, re)) layers.insert(std::stoll(m[1]));
  }
  // Layers must be numbered 0..n-1 without gaps.
  int64_t n = static_cast<int64_t>(layers.size());
  if (n && *layers.rbegin() != n - 1) return -1;
  return n;
}

}  // namespace

StateDict readTorchScriptArchive(const std::string& path) { return readTorchScript(path); }

LoadedWeights readClipWeights(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("ERR_FILE_NOT_FOUND", path + ": no such file or directory");
  LoadedWeights w;
  w.source = path;
  fs::path file = path;
  if (fs::is_directory(path, ec)) {
    // A Hugging Face model folder: config.json + model.safetensors.
    file = fs::path(path) / "model.safetensors";
    if (!fs::exists(file, ec))
      fail("ERR_FILE_NOT_FOUND", path + ": a model directory must hold model.safetensors (and config.json)");
    readHfConfig(fs::path(path) / "config.json", w);
    readOpenClipConfig(fs::path(path) / "open_clip_config.json", w);
  }
  if (looksLikeZip(file.string())) {
    w.tensors = readTorchScript(file.string());
    w.format = WeightsFormat::TorchScript;
  } else {
    auto sd = readSafetensors(file.string());
    if (hasHuggingFaceNames(sd)) {
      if (!w.visionHeads) readHfConfig(file.parent_path() / "config.json", w);
      w.tensors = fromHuggingFace(sd, file.string());
      w.format = WeightsFormat::HuggingFace;
    } else {
      w.tensors = std::move(sd);
      w.format = WeightsFormat::OpenAiSafetensors;
      // An optional config.json beside the file may give head counts that are not width/64 (and activations).
      readHfConfig(file.parent_path() / "config.json", w);
    }
    if (!fs::is_directory(path, ec)) readOpenClipConfig(file.parent_path() / "open_clip_config.json", w);
  }
  if (w.tensors.count("visual.layer1.0.conv1.weight") || w.tensors.count("visual.attnpool.positional_embedding"))
    fail("ERR_BAD_WEIGHTS", path + ": ResNet CLIP variants (RN50, …) are not supported, only ViT models");
  return w;
}

ClipConfig inferClipConfig(const LoadedWeights& w) {
  const auto& sd = w.tensors;
  const auto& src = w.source;
  ClipConfig c;
  auto shapeError = [&](const std::string& key, const std::string& why) {
    fail("ERR_BAD_WEIGHTS", src + ": tensor '" + key + "' " + why);
  };
  const auto& conv = need(sd, "visual.conv1.weight", src);
  if (conv.dim() != 4 || conv.size(1) != 3 || conv.size(2) != conv.size(3)) shapeError("visual.conv1.weight", "must be [W,3,P,P]");
  c.vision.width = conv.size(0);
  c.vision.patchSize = conv.size(2);
  const auto& vpos = need(sd, "visual.positional_embedding", src);
  if (vpos.dim() != 2) shapeError("visual.positional_embedding", "must be [T,W]");
  const int64_t grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(vpos.size(0) - 1))));
  if (grid < 1 || grid * grid + 1 != vpos.size(0)) shapeError("visual.positional_embedding", "must have grid²+1 rows");
  c.vision.imageSize = grid * c.vision.patchSize;
  c.vision.layers = countLayers(sd, "visual.transformer.resblocks.");
  if (c.vision.layers <= 0) fail("ERR_BAD_WEIGHTS", src + ": no (or non-contiguous) vision attention layers found");
  const auto& proj = need(sd, "visual.proj", src);
  if (proj.dim() != 2) shapeError("visual.proj", "must be [W,D]");
  c.embedDim = proj.size(1);

  const auto& tok = need(sd, "token_embedding.weight", src);
  if (tok.dim() != 2) shapeError("token_embedding.weight", "must be [V,W]");
  c.text.vocabSize = tok.size(0);
  c.text.width = tok.size(1);
  const auto& tpos = need(sd, "positional_embedding", src);
  if (tpos.dim() != 2) shapeError("positional_embedding", "must be [ctx,W]");
  c.text.contextLength = tpos.size(0);
  c.text.layers = countLayers(sd, "transformer.resblocks.");
  if (c.text.layers <= 0) fail("ERR_BAD_WEIGHTS", src + ": no (or non-contiguous) text attention layers found");

  auto headsFor = [&](int64_t width, const std::optional<int64_t>& given, const char* tower) {
    int64_t h = given ? *given : std::max<int64_t>(1, width / 64);
    if (width % h != 0)
      fail("ERR_BAD_WEIGHTS", src + ": " + tower + " width " + std::to_string(width) + " is not divisible by " +
                                  std::to_string(h) + " heads");
    return h;
  };
  c.vision.heads = headsFor(c.vision.width, w.visionHeads, "vision");
  c.text.heads = headsFor(c.text.width, w.textHeads, "text");
  c.vision.activation = w.visionActivation.value_or(Activation::QuickGelu);
  c.text.activation = w.textActivation.value_or(Activation::QuickGelu);
  return c;
}

void assignClipWeights(ClipImpl& model, const LoadedWeights& w) {
  torch::NoGradGuard noGrad;
  auto shapeStr = [](at::IntArrayRef s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
    return out + "]";
  };
  for (auto& p : model.named_parameters(true)) {
    const auto& src = need(w.tensors, p.key(), w.source);
    if (!src.is_floating_point())
      fail("ERR_BAD_WEIGHTS", w.source + ": tensor '" + p.key() + "' has a non-float dtype");
    if (src.sizes() != p.value().sizes())
      fail("ERR_BAD_WEIGHTS", w.source + ": tensor '" + p.key() + "' has shape " + shapeStr(src.sizes()) +
                                  ", the architecture needs " + shapeStr(p.value().sizes()));
    if (!torch::isfinite(src).all().item<bool>())
      fail("ERR_NON_FINITE", w.source + ": tensor '" + p.key() + "' contains NaN or Inf values");
    p.value().copy_(src.to(p.value().options()));
  }
}

std::string fingerprintWeights(ClipImpl& model) {
  torch::NoGradGuard noGrad;
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&](const void* data, size_t n) {
    auto* b = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) { h ^= b[i]; h *= 1099511628211ULL; }
  };
  for (auto& p : model.named_parameters(true)) {
    mix(p.key().data(), p.key().size());
    for (auto s : p.value().sizes()) mix(&s, sizeof(s));
    // Sums in float64, rounded to 6 significant digits: the same weights fingerprint alike in any compute dtype.
    auto v = p.value().to(torch::kFloat64);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.5e/%.5e", v.sum().item<double>(), v.abs().sum().item<double>());
    mix(buf, std::strlen(buf));
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

}  // namespace ipclip
